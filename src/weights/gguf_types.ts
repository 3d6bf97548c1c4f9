/**
 * The vocabulary of GGUF, llama.cpp's file format: its metadata value types and ggml's tensor
 * types, with each tensor type's block layout (elements per block, bytes per block), as
 * ggml's `ggml.h`/`ggml-common.h` and gguf-py's GGML_QUANT_SIZES define them. Where the two
 * differ, ggml's block structs win: gguf-py still gives Q8_1 the 40 bytes it had before its
 * d and s became halves, where ggml-common.h asserts 36. Shared by the reader (gguf.ts) and
 * the writer (gguf_writer.ts).
 */

/** Metadata value types, by their id in the file. */
export const GGUF_VALUE_TYPES = [
  "UINT8",
  "INT8",
  "UINT16",
  "INT16",
  "UINT32",
  "INT32",
  "FLOAT32",
  "BOOL",
  "STRING",
  "ARRAY",
  "UINT64",
  "INT64",
  "FLOAT64",
] as const;

export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];

/** Bytes of one value of each fixed-size type. */
export const GGUF_VALUE_BYTES: Partial<Record<GgufValueType, number>> = {
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  UINT32: 4,
  INT32: 4,
  FLOAT32: 4,
  BOOL: 1,
  UINT64: 8,
  INT64: 8,
  FLOAT64: 8,
};

/** An array's elements: numbers (bigints for the 64-bit integers), booleans, strings, or arrays again. */
export interface GgufArray {
  itemType: GgufValueType;
  values: (number | bigint | boolean | string | GgufArray)[];
}

/** One metadata value with its type. */
export type GgufValue =
  | { type: "UINT8" | "INT8" | "UINT16" | "INT16" | "UINT32" | "INT32" | "FLOAT32" | "FLOAT64"; value: number }
  | { type: "UINT64" | "INT64"; value: bigint }
  | { type: "BOOL"; value: boolean }
  | { type: "STRING"; value: string }
  | { type: "ARRAY"; value: GgufArray };

/** A ggml tensor type: its name, and how many elements a block of how many bytes holds. */
export interface GgmlType {
  id: number;
  name: string;
  blockElements: number;
  blockBytes: number;
}

const QK_K = 256;

/** Every ggml tensor type a GGUF file may hold, by id (ids 4, 5 and 31 to 33, 36 to 38 were removed from ggml). */
export const GGML_TYPES: ReadonlyMap<number, GgmlType> = new Map(
  (
    [
      [0, "F32", 1, 4],
      [1, "F16", 1, 2],
      [2, "Q4_0", 32, 2 + 16],
      [3, "Q4_1", 32, 2 + 2 + 16],
      [6, "Q5_0", 32, 2 + 4 + 16],
      [7, "Q5_1", 32, 2 + 2 + 4 + 16],
      [8, "Q8_0", 32, 2 + 32],
      [9, "Q8_1", 32, 2 + 2 + 32],
      [10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4],
      [11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12],
      [12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12],
      [13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12],
      [14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16],
      [15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8],
      [16, "IQ2_XXS", QK_K, 2 + QK_K / 4],
      [17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32],
      [18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8],
      [19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16],
      [20, "IQ4_NL", 32, 2 + 16],
      [21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4],
      [22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16],
      [23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64],
      [24, "I8", 1, 1],
      [25, "I16", 1, 2],
      [26, "I32", 1, 4],
      [27, "I64", 1, 8],
      [28, "F64", 1, 8],
      [29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32],
      [30, "BF16", 1, 2],
      [34, "TQ1_0", QK_K, 2 + 4 * 13],
      [35, "TQ2_0", QK_K, 2 + 64],
      [39, "MXFP4", 32, 1 + 16],
    ] as const
  ).map(([id, name, blockElements, blockBytes]) => [id, { id, name, blockElements, blockBytes }]),
);

/** A ggml type by name ("Q4_K"), or undefined. */
export function ggmlTypeNamed(name: string): GgmlType | undefined {
  for (const type of GGML_TYPES.values()) if (type.name === name) return type;
  return undefined;
}

/** The default alignment of tensor data, when general.alignment is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** "GGUF" as the file's first four bytes. */
export const GGUF_MAGIC = Uint8Array.from([0x47, 0x47, 0x55, 0x46]);
