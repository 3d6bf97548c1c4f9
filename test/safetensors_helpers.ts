/**
 * Safetensors files whole, in memory: what tests need beside the runtime's reader and writer,
 * which stream a tensor at a time so that a checkpoint never sits in JavaScript memory.
 */
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { encodeSafetensorsHeader, type TensorToWrite } from "../src/weights/safetensors_writer.js";

/** Every tensor of a small file (a fixture) as float32: name → { shape, data }. */
export async function readAllFloat32(path: string): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const file = await SafetensorsFile.open(path);
  try {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const name of file.tensors.keys()) out.set(name, await file.readFloat32(name));
    return out;
  } finally {
    await file.close();
  }
}

/** The bytes writeSafetensors would write, as one array: for tests that corrupt or compare a file's bytes. */
export function serializeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const { header, order, dataBytes } = encodeSafetensorsHeader(tensors, metadata);
  const out = new Uint8Array(header.byteLength + dataBytes);
  out.set(header);
  let at = header.byteLength;
  for (const name of order) {
    const { data } = tensors[name];
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    at += data.byteLength;
  }
  return out;
}
