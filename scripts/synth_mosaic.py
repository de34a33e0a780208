"""Draw a mosaic of synthetic belt frames with their ground-truth boxes (for the docs).

    python scripts/synth_mosaic.py demo/frames docs/images/synth-mosaic.jpg
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"cardboard": "#d08a3c", "paper": "#ffffff", "pet_bottle": "#4fc3f7", "hdpe_container": "#ffeb3b",
           "aluminum_can": "#b0bec5", "film": "#ce93d8", "glass": "#66bb6a", "battery": "#ff1744"}


def main(root: str, out: str, cols: int = 4, rows: int = 3) -> None:
    root_path = Path(root)
    coco = json.loads((root_path / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    # one frame per site first, then frames with a battery, then spread over the set
    picks, seen_sites = [], set()
    for image in coco["images"]:
        if image["site"] not in seen_sites:
            picks.append(image)
            seen_sites.add(image["site"])
    picks += [im for im in coco["images"] if any(names[a["category_id"]] == "battery" for a in by_image.get(im["id"], []))][:3]
    step = max(1, len(coco["images"]) // (cols * rows))
    picks += coco["images"][::step]
    picks = list({im["id"]: im for im in picks}.values())[: cols * rows]
    w, h = picks[0]["width"], picks[0]["height"]
    mosaic = Image.new("RGB", (cols * w, rows * h))
    for n, image in enumerate(picks):
        frame = Image.open(root_path / "images" / image["file_name"]).convert("RGB")
        draw = ImageDraw.Draw(frame)
        for ann in by_image.get(image["id"], []):
            x, y, bw, bh = ann["bbox"]
            name = names[ann["category_id"]]
            draw.rectangle([x, y, x + bw, y + bh], outline=COLOURS[name], width=2)
            draw.text((x + 2, y + 1), name, fill=COLOURS[name])
        draw.text((4, h - 12), f"{image['site']}/{image['camera']}", fill="#ffffff")
        mosaic.paste(frame, ((n % cols) * w, (n // cols) * h))
    mosaic.save(out, quality=85)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
