/** Builds IDX bytes: magic 0 0 type ndims, big-endian uint32 dims, big-endian elements. */
export function idxBytes(type: number, dims: number[], values: number[]): Uint8Array {
  const size: Record<number, number> = { 0x08: 1, 0x09: 1, 0x0b: 2, 0x0c: 4, 0x0d: 4, 0x0e: 8 };
  const bytes = new Uint8Array(4 + 4 * dims.length + values.length * size[type]);
  const v = new DataView(bytes.buffer);
  bytes[2] = type;
  bytes[3] = dims.length;
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  let off = 4 + 4 * dims.length;
  for (const x of values) {
    if (type === 0x08) v.setUint8(off, x);
    else if (type === 0x09) v.setInt8(off, x);
    else if (type === 0x0b) v.setInt16(off, x, false);
    else if (type === 0x0c) v.setInt32(off, x, false);
    else if (type === 0x0d) v.setFloat32(off, x, false);
    else v.setFloat64(off, x, false);
    off += size[type];
  }
  return bytes;
}
