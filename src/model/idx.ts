/**
 * Reader for the IDX format of (Fashion-)MNIST, gzipped or not. Only unsigned
 * byte data (type 0x08) is accepted, which is what image and label files use.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { LayercacheError } from "../errors/index.ts";

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

export function parseIdx(bytes: Uint8Array, where = "IDX data"): IdxArray {
  const buf = bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes;
  const bad = (why: string) => new LayercacheError("FRAME_INVALID", `${where}: ${why}`);
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0) throw bad("not an IDX file (bad magic)");
  if (buf[2] !== 0x08) throw bad(`element type 0x${buf[2]!.toString(16)} is not unsigned byte`);
  const ndim = buf[3]!;
  const header = 4 + 4 * ndim;
  if (ndim === 0 || buf.length < header) throw bad("truncated header");
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims = Array.from({ length: ndim }, (_, i) => view.getUint32(4 + 4 * i, false));
  const size = dims.reduce((a, b) => a * b, 1);
  if (buf.length !== header + size) throw bad(`expected ${size} data bytes, found ${buf.length - header}`);
  return { dims, data: buf.subarray(header) };
}

export interface LabelledImages {
  count: number;
  height: number;
  width: number;
  /** count x height x width bytes, row-major. */
  images: Uint8Array;
  labels: Uint8Array;
}

/** Loads `<prefix>-images-idx3-ubyte(.gz)` and `<prefix>-labels-idx1-ubyte(.gz)` from a folder. */
export async function loadIdxDataset(dir: string, prefix = "t10k"): Promise<LabelledImages> {
  const read = async (stem: string) => {
    for (const name of [`${stem}.gz`, stem]) {
      try {
        return parseIdx(await readFile(join(dir, name)), name);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    throw new LayercacheError("FRAME_INVALID", `${stem}(.gz) not found in ${dir}`);
  };
  const images = await read(`${prefix}-images-idx3-ubyte`);
  const labels = await read(`${prefix}-labels-idx1-ubyte`);
  const [count, height, width] = images.dims;
  if (images.dims.length !== 3 || labels.dims.length !== 1 || labels.dims[0] !== count) {
    throw new LayercacheError("FRAME_INVALID", `${dir}: image and label files do not match`);
  }
  return { count: count!, height: height!, width: width!, images: images.data, labels: labels.data };
}
