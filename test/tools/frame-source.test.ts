/**
 * Where `layercache produce` reads images: PNG and JPEG headers, the
 * file-name label convention, folders (order, checks, errors) and the
 * bundled Fashion-MNIST split; plus the producer's order and pacing rules.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { afterAll, describe, expect, it } from "vitest";
import { decodeFrame, encodeFrame } from "../../src/codec/frame.ts";
import { openFrameSource } from "../../src/tools/frame-source.ts";
import { chunkSize, frameOrder } from "../../src/tools/frame-producer.ts";
import { labelFromFileName, readImageHeader } from "../../src/tools/image-files.ts";

const dirs: string[] = [];
function folder(files: Record<string, Uint8Array>): string {
  const dir = mkdtempSync(join(tmpdir(), "layercache-frames-"));
  dirs.push(dir);
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A PNG of the given size; colorType 0 is gray, 2 RGB, 6 RGBA. */
function png(width: number, height: number, colorType: 0 | 2 | 6): Uint8Array {
  const image = new PNG({ width, height, colorType, inputColorType: 6, bitDepth: 8 });
  for (let i = 0; i < width * height; i++) image.data.set([i % 256, (i * 3) % 256, 50, 255], i * 4);
  return new Uint8Array(PNG.sync.write(image, { colorType, inputColorType: 6 }));
}

function jpg(width: number, height: number): Uint8Array {
  const data = Buffer.alloc(width * height * 4, 128);
  return new Uint8Array(jpeg.encode({ data, width, height }, 90).data);
}

async function expectRejects(promise: Promise<unknown>, code: string, text: RegExp): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name: "LayercacheError", code });
  await expect(promise).rejects.toThrow(text);
}

describe("image headers", () => {
  it("reads size and channels from PNG (gray 1, colour 3) and JPEG", () => {
    expect(readImageHeader(png(28, 20, 0), "a.png")).toEqual({
      encoding: "PNG",
      width: 28,
      height: 20,
      channels: 1,
    });
    expect(readImageHeader(png(5, 7, 2), "b.png")).toMatchObject({ width: 5, height: 7, channels: 3 });
    expect(readImageHeader(png(5, 7, 6), "c.png")).toMatchObject({ channels: 3 });
    expect(readImageHeader(jpg(33, 17), "d.jpg")).toEqual({
      encoding: "JPEG",
      width: 33,
      height: 17,
      channels: 3,
    });
  });

  it("rejects what is neither, naming the file", () => {
    expect(() => readImageHeader(new TextEncoder().encode("GIF89a..."), "x.png")).toThrow(
      /x\.png: not a PNG or JPEG file/,
    );
    expect(() => readImageHeader(Uint8Array.from([0xff, 0xd8, 0xff, 0xd9]), "y.jpg")).toThrow(
      /y\.jpg: JPEG file without a frame header/,
    );
  });

  it("takes a label only from names ending in _label<N>", () => {
    expect(labelFromFileName("boot_label9.png")).toBe(9);
    expect(labelFromFileName("0042_label3.JPG")).toBe(3);
    expect(labelFromFileName("3_dress.png")).toBeNull();
    expect(labelFromFileName("label9.png")).toBeNull();
    expect(labelFromFileName("x_label9_copy.png")).toBeNull();
  });
});

describe("frame sources", () => {
  it("a folder: image files in natural name order, labels by convention, frames the worker accepts", async () => {
    const dir = folder({
      "img10_label2.png": png(28, 28, 0),
      "img2.jpg": jpg(28, 28),
      "img1_label7.png": png(28, 28, 6),
      "notes.txt": new TextEncoder().encode("not an image"),
    });
    const source = await openFrameSource(dir);
    expect(source.size).toBe(3);
    expect(source.description).toContain("3 images, 2 labelled");
    const images = [0, 1, 2].map((i) => source.image(i));
    expect(images.map((i) => [i.encoding, i.channels, i.label])).toEqual([
      ["PNG", 3, 7],
      ["JPEG", 3, null],
      ["PNG", 1, 2],
    ]);
    for (const [i, image] of images.entries()) {
      const msg = encodeFrame({ id: `f${i}`, producedAt: 1, ...image });
      const frame = decodeFrame(msg.value, msg.headers, { maxMessageBytes: 1 << 20 });
      expect(frame).toMatchObject({ width: 28, height: 28, channels: image.channels, label: image.label });
      expect(frame.pixels).toHaveLength(28 * 28 * image.channels);
    }
  });

  it("refuses a missing path, a file, an empty folder and a corrupt image, saying which", async () => {
    const empty = folder({ "readme.md": new Uint8Array([1]) });
    await expectRejects(openFrameSource(join(empty, "nope")), "CONFIG_INVALID", /no such file or folder/);
    await expectRejects(openFrameSource(join(empty, "readme.md")), "CONFIG_INVALID", /not a folder/);
    await expectRejects(openFrameSource(empty), "CONFIG_INVALID", /holds no \.png, \.jpg or \.jpeg files/);
    const good = png(28, 28, 0);
    const corrupt = folder({ "ok.png": good, "bad.png": good.slice(0, 40) });
    await expectRejects(openFrameSource(corrupt), "FRAME_INVALID", /bad\.png: PNG payload does not decode/);
  });

  it("fashion-mnist: the 10,000 labelled 28x28 gray test images", async () => {
    const source = await openFrameSource("fashion-mnist");
    expect(source.size).toBe(10_000);
    const first = source.image(0);
    expect(first).toMatchObject({ width: 28, height: 28, channels: 1, encoding: "RAW8" });
    expect(first.pixels).toHaveLength(784);
    expect(first.label).toBeGreaterThanOrEqual(0);
    expect(first.label).toBeLessThan(10);
  });
});

describe("producer order and pacing", () => {
  it("keeps the source order, or shuffles it reproducibly by seed", () => {
    expect([...frameOrder(5)]).toEqual([0, 1, 2, 3, 4]);
    const a = [...frameOrder(1_000, 7)];
    expect(a).toEqual([...frameOrder(1_000, 7)]);
    expect(a).not.toEqual([...frameOrder(1_000, 8)]);
    expect([...a].sort((x, y) => x - y)).toEqual([...frameOrder(1_000)]);
  });

  it("sends big requests flat out and about 50 ms of frames when paced", () => {
    expect(chunkSize(undefined)).toBe(500);
    expect(chunkSize(1_000)).toBe(50);
    expect(chunkSize(1)).toBe(1);
    expect(chunkSize(1e6)).toBe(500);
  });
});
