/**
 * Where `layercache produce` gets its images: the bundled Fashion-MNIST test
 * split (RAW8 28x28 gray, with ground-truth labels) or a folder of PNG and
 * JPEG files (sent as they are, labelled only by the file-name convention in
 * image-files.ts). Every image is checked once when the source opens, so a
 * bad file stops the producer before it sends anything.
 */
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FrameEncoding } from "../codec/frame.ts";
import { decodeImage } from "../codec/image.ts";
import { LayercacheError, isLayercacheError } from "../errors/index.ts";
import { loadIdxDataset } from "../model/idx.ts";
import { isImageFileName, labelFromFileName, readImageHeader } from "./image-files.ts";

/** `--source` value naming the bundled test split. */
export const FASHION_MNIST = "fashion-mnist";
export const FASHION_MNIST_DIR = fileURLToPath(new URL("../../data/fashion-mnist", import.meta.url));

export interface SourceImage {
  width: number;
  height: number;
  channels: number;
  encoding: FrameEncoding;
  /** RAW8 pixels, or the PNG/JPEG file. */
  pixels: Uint8Array;
  label: number | null;
}

export interface FrameSource {
  /** For messages: "fashion-mnist (t10k)" or the folder. */
  readonly description: string;
  /** Number of distinct images. */
  readonly size: number;
  image(index: number): SourceImage;
}

/** Opens `fashion-mnist` or a folder of images; throws CONFIG_INVALID or FRAME_INVALID naming the problem. */
export async function openFrameSource(source: string): Promise<FrameSource> {
  return source === FASHION_MNIST ? fashionMnist() : imageFolder(source);
}

async function fashionMnist(): Promise<FrameSource> {
  const data = await loadIdxDataset(FASHION_MNIST_DIR, "t10k");
  const size = data.height * data.width;
  return {
    description: `fashion-mnist test split (${data.count} images)`,
    size: data.count,
    image: (i) => ({
      width: data.width,
      height: data.height,
      channels: 1,
      encoding: "RAW8",
      pixels: data.images.subarray(i * size, (i + 1) * size),
      label: data.labels[i]!,
    }),
  };
}

async function imageFolder(dir: string): Promise<FrameSource> {
  const notUsable = (why: string) =>
    new LayercacheError("CONFIG_INVALID", `--source ${dir}: ${why} (expected "${FASHION_MNIST}" or a folder)`);
  const info = await stat(dir).catch(() => undefined);
  if (!info) throw notUsable("no such file or folder");
  if (!info.isDirectory()) throw notUsable("not a folder");
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() && isImageFileName(e.name))
    .map((e) => e.name)
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  if (names.length === 0) throw notUsable("holds no .png, .jpg or .jpeg files");

  const images: SourceImage[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const bytes = new Uint8Array(await readFile(path));
    const header = readImageHeader(bytes, path);
    try {
      // The worker would dead-letter a file that does not decode; better to say so now.
      decodeImage(header.encoding, bytes, header);
    } catch (err) {
      if (!isLayercacheError(err, "FRAME_INVALID")) throw err;
      throw new LayercacheError("FRAME_INVALID", `${path}: ${err.message}`, { details: err.details });
    }
    images.push({ ...header, pixels: bytes, label: labelFromFileName(name) });
  }
  const labelled = images.filter((i) => i.label !== null).length;
  return {
    description: `${dir} (${images.length} images, ${labelled} labelled)`,
    size: images.length,
    image: (i) => images[i]!,
  };
}
