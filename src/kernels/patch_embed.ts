/**
 * CLIP's vision embeddings (CLIPVisionEmbeddings): cut the image into P×P patches, project each
 * patch to `hidden` values, put the class embedding in front, add the position embeddings.
 *
 *   out[n, 0, o]              = class[o] + pos[0, o]
 *   out[n, 1 + py·gw + px, o] = Σ_{c,ky,kx} w[o,c,ky,kx]·pix[n, c, py·P+ky, px·P+kx] (+ bias[o])
 *                               + pos[1 + py·gw + px, o]
 *
 * with gh = floor(H/P), gw = floor(W/P) patches down and across (pixels past the last whole
 * patch are ignored, as Conv2d with kernel = stride = P and no padding does).
 *
 * The convolution is a matrix product in disguise ("im2col"): lay each patch out as a row of
 * C·P·P values, in the order (c, ky, kx) that the weight [hidden, C, P, P] already has, and the
 * patch projections are patches [tokens, C·P·P] × weightᵀ [C·P·P, hidden]. Nothing is copied
 * to build that patch matrix: the kernel is a tiled matrix product whose A-tile loader reads
 * each patch-row element straight from the image (row → image, py, px; column → c, ky, kx).
 * The class token gets a row of zeros in that matrix, so every output row goes through the
 * same code, and its value is set in the epilogue.
 *
 * Tiling: each workgroup computes a 64×64 tile of the output [N·(1 + gh·gw), hidden]; its 256
 * threads each accumulate a 4×4 block in registers. The K dimension (C·P·P) is walked 16 at a
 * time: the workgroup gathers a 64×16 slab of patch values and a 16×64 slab of weights into
 * workgroup memory (4 KiB each), then every thread does its 4×4×16 multiply-adds from there,
 * so each value fetched from memory is used 64 times. Rows and columns past the ends are
 * loaded as zeros and never stored, so no size needs to divide anything.
 */
import { isFloat, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { ceilDiv, defineKernel } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";

export interface PatchEmbedWeights {
  /** Conv2d weight [hidden, channels, P, P] (kernel = stride = P, no padding). */
  patchWeight: Tensor;
  /** Conv2d bias [hidden]; CLIP has none. */
  patchBias?: Tensor;
  /** [hidden]: the embedding of the class token, which comes first. */
  classEmbedding: Tensor;
  /** [1 + gh·gw, hidden]: one row per token, the class token's first. */
  positionEmbedding: Tensor;
}

// ------------------------------------------------------------------ CPU reference (float64)

export interface PatchEmbedReferenceInput {
  /** [N, C, H, W] row-major. */
  pixels: ArrayLike<number>;
  shape: readonly [number, number, number, number];
  /** [hidden, C, P, P] row-major. */
  weight: ArrayLike<number>;
  patch: number;
  hidden: number;
  bias?: ArrayLike<number>;
  classEmbedding: ArrayLike<number>;
  positionEmbedding: ArrayLike<number>;
}

/** [N, 1 + gh·gw, hidden], straight from the definition. */
export function patchEmbedReference(input: PatchEmbedReferenceInput): Float64Array {
  const { pixels, weight, patch: P, hidden, bias, classEmbedding, positionEmbedding } = input;
  const [N, C, H, W] = input.shape;
  const gh = Math.floor(H / P);
  const gw = Math.floor(W / P);
  const tokens = 1 + gh * gw;
  const out = new Float64Array(N * tokens * hidden);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < hidden; o++) out[n * tokens * hidden + o] = classEmbedding[o] + positionEmbedding[o];
    for (let py = 0; py < gh; py++) {
      for (let px = 0; px < gw; px++) {
        const token = 1 + py * gw + px;
        for (let o = 0; o < hidden; o++) {
          let sum = bias ? bias[o] : 0;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < P; ky++) {
              for (let kx = 0; kx < P; kx++) {
                const w = weight[((o * C + c) * P + ky) * P + kx];
                const x = pixels[((n * C + c) * H + py * P + ky) * W + px * P + kx];
                sum += w * x;
              }
            }
          }
          out[(n * tokens + token) * hidden + o] = sum + positionEmbedding[token * hidden + o];
        }
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const TILE_M = 64; // output rows (tokens) per workgroup
const TILE_N = 64; // output columns (hidden) per workgroup
const TILE_K = 16; // patch values per step
const THREADS = 256; // 16×16 threads, each a 4×4 block of outputs

const patchEmbedKernel = defineKernel({
  name: "patch_embed",
  params: {
    rows: "u32", // N · tokens
    tokens: "u32", // 1 + gh·gw
    hidden: "u32",
    depth: "u32", // C·P·P, the length of one patch row
    patch_size: "u32",
    grid_w: "u32", // gw
    width: "u32",
    plane: "u32", // H·W
    image: "u32", // C·H·W
  },
  // Without a bias, `bias` is bound to the class embedding and never read (a binding must be
  // there either way).
  bindings: {
    pixels: "read",
    weight: "read",
    bias: "read",
    class_embedding: "read",
    position_embedding: "read",
    out: "read_write",
  },
  wgsl: ({ hasBias }: { hasBias: boolean }) => /* wgsl */ `
var<workgroup> a_tile: array<f32, ${TILE_K * TILE_M}>;  // [k][row]: patch values
var<workgroup> b_tile: array<f32, ${TILE_K * TILE_N}>;  // [k][column]: weights

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row0 = wid.y * ${TILE_M}u;
  let col0 = wid.x * ${TILE_N}u;

  // Loading: thread lid fetches 4 consecutive k of one row of the A slab and of one column
  // of the B slab. Its row's place in the image is worked out once, here.
  let load_k = (lid % 4u) * 4u;
  let a_row = lid / 4u;
  let row = row0 + a_row;
  let token = row % params.tokens;
  let is_patch = row < params.rows && token != 0u;
  let patch_index = max(token, 1u) - 1u;
  let py = patch_index / params.grid_w;
  let px = patch_index % params.grid_w;
  let patch_origin = (row / params.tokens) * params.image + py * params.patch_size * params.width + px * params.patch_size;
  let b_col = lid / 4u;
  let weight_row = (col0 + b_col) * params.depth;
  let has_weight_row = col0 + b_col < params.hidden;
  let patch_area = params.patch_size * params.patch_size;

  // Computing: thread (tx, ty) owns rows ty + 16i and columns tx + 16j, i, j < 4.
  let tx = lid % 16u;
  let ty = lid / 16u;
  var acc: array<array<f32, 4>, 4>;

  for (var k0 = 0u; k0 < params.depth; k0 += ${TILE_K}u) {
    for (var u = 0u; u < 4u; u++) {
      let k = k0 + load_k + u;
      var a = 0.0;
      if (is_patch && k < params.depth) {
        // Column k of the patch matrix is channel c, patch row ky, patch column kx.
        let c = k / patch_area;
        let within = k % patch_area;
        let ky = within / params.patch_size;
        let kx = within % params.patch_size;
        a = f32(pixels[patch_origin + c * params.plane + ky * params.width + kx]);
      }
      a_tile[(load_k + u) * ${TILE_M}u + a_row] = a;
      var b = 0.0;
      if (has_weight_row && k < params.depth) {
        b = f32(weight[weight_row + k]);
      }
      b_tile[(load_k + u) * ${TILE_N}u + b_col] = b;
    }
    workgroupBarrier();
    for (var k = 0u; k < ${TILE_K}u; k++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = a_tile[k * ${TILE_M}u + ty + 16u * i];
        b[i] = b_tile[k * ${TILE_N}u + tx + 16u * i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i][j] += a[i] * b[j];
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let r = row0 + ty + 16u * i;
    if (r >= params.rows) { continue; }
    let t = r % params.tokens;
    for (var j = 0u; j < 4u; j++) {
      let o = col0 + tx + 16u * j;
      if (o >= params.hidden) { continue; }
      var v: f32;
      if (t == 0u) {
        v = f32(class_embedding[o]);
      } else {
        v = acc[i][j]${hasBias ? " + f32(bias[o])" : ""};
      }
      out[r * params.hidden + o] = out_t(v + f32(position_embedding[t * params.hidden + o]));
    }
  }
}`,
});

// ------------------------------------------------------------------ launch

/**
 * pixels [N, C, H, W] → [N, 1 + gh·gw, hidden]: the patch projections behind the class
 * embedding, plus the position embeddings. Weights may be f32 or f16.
 */
export function patchEmbed(pixels: Tensor, weights: PatchEmbedWeights, outDtype: DType = pixels.dtype): Tensor {
  const { patchWeight: weight, patchBias: bias, classEmbedding, positionEmbedding } = weights;
  check(pixels.rank === 4, () => `patchEmbed: pixels ${pixels.describe()} must be [images, channels, height, width]`);
  check(
    weight.rank === 4 && weight.dim(2) === weight.dim(3),
    () => `patchEmbed: patch weight ${weight.describe()} must be [hidden, channels, P, P]`,
  );
  const inputs = {
    pixels,
    "patch weight": weight,
    "class embedding": classEmbedding,
    "position embedding": positionEmbedding,
    "patch bias": bias,
  };
  for (const [what, t] of Object.entries(inputs)) {
    if (t) check(isFloat(t.dtype), () => `patchEmbed: ${what} ${t.describe()} must be f32 or f16`);
  }
  check(isFloat(outDtype), () => `patchEmbed: output dtype ${outDtype} must be f32 or f16`);
  const [N, C, H, W] = pixels.shape;
  const [hidden, weightChannels, P] = weight.shape;
  check(
    weightChannels === C,
    () => `patchEmbed: patch weight ${weight.describe()} expects ${weightChannels} channels, pixels ${pixels.describe()} have ${C}`,
  );
  check(hidden >= 1 && P >= 1, () => `patchEmbed: patch weight ${weight.describe()} is empty`);
  check(
    P <= H && P <= W,
    () => `patchEmbed: image ${H}x${W} of pixels ${pixels.describe()} is smaller than one ${P}x${P} patch`,
  );
  const gridH = Math.floor(H / P);
  const gridW = Math.floor(W / P);
  const tokens = 1 + gridH * gridW;
  check(
    classEmbedding.rank === 1 && classEmbedding.dim(0) === hidden,
    () => `patchEmbed: class embedding ${classEmbedding.describe()} must be [${hidden}]`,
  );
  check(
    positionEmbedding.rank === 2 && positionEmbedding.dim(1) === hidden,
    () => `patchEmbed: position embedding ${positionEmbedding.describe()} must be [positions, ${hidden}]`,
  );
  check(
    positionEmbedding.dim(0) === tokens,
    () =>
      `patchEmbed: position embedding ${positionEmbedding.describe()} has ${positionEmbedding.dim(0)} positions, but ` +
      `a ${H}x${W} image in ${P}x${P} patches makes 1 + ${gridH}·${gridW} = ${tokens} tokens`,
  );
  if (bias) check(bias.rank === 1 && bias.dim(0) === hidden, () => `patchEmbed: patch bias ${bias.describe()} must be [${hidden}]`);

  const out = pixels.gpu.empty([N, tokens, hidden], outDtype, { name: "patch_embed" });
  pixels.gpu.record(patchEmbedKernel, {
    params: {
      rows: N * tokens,
      tokens,
      hidden,
      depth: C * P * P,
      patch_size: P,
      grid_w: gridW,
      width: W,
      plane: H * W,
      image: C * H * W,
    },
    tensors: {
      pixels,
      weight,
      bias: bias ?? classEmbedding,
      class_embedding: classEmbedding,
      position_embedding: positionEmbedding,
      out,
    },
    workgroups: [ceilDiv(hidden, TILE_N), ceilDiv(N * tokens, TILE_M)],
    spec: { hasBias: bias !== undefined },
  });
  return out;
}
