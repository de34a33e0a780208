"""Synthetic belt imagery: the embedded default data set for the demo, tests and benchmarks.

Frames come from belt *sequences*: a camera looks down at a moving belt, objects ride it through
the field of view and tumble a little, so consecutive frames are near-duplicates as with a real
10 fps belt camera. Eight waste classes with a long tail (battery is about 1% of objects), clutter
and occlusion, and sites that differ in belt colour, lighting, blur and noise (domain shift).

Output (``OUT``):
    images/<site>/<camera>/<sequence>/<site>_<camera>_<sequence>_<frame>_<YYYYmmddTHHMMSS.fff>.jpg
    annotations.json     COCO ground truth (visible-part boxes), images carry site/camera/sequence
    classes.yaml         the class map (names in id order)

Deterministic per seed: sequence ``k`` draws from its own generator seeded with ``(seed, k)``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES: tuple[str, ...] = (
    "cardboard",
    "paper",
    "pet_bottle",
    "hdpe_container",
    "aluminum_can",
    "film",
    "glass",
    "battery",
)
# Share of objects per class: long-tailed like a real MRF stream; battery (hazardous, the class a
# missed detection costs most) is ~1%.
CLASS_FREQUENCIES: dict[str, float] = {
    "cardboard": 0.22,
    "paper": 0.20,
    "pet_bottle": 0.17,
    "hdpe_container": 0.10,
    "aluminum_can": 0.12,
    "film": 0.12,
    "glass": 0.06,
    "battery": 0.01,
}


@dataclass(frozen=True)
class Site:
    name: str
    belt_rgb: tuple[int, int, int]
    light_gain: float  # overall brightness multiplier
    tint: tuple[float, float, float]  # per-channel multiplier (colour temperature)
    blur: float  # Gaussian blur radius in px (motion / focus)
    noise: float  # sensor noise sigma in 0-255 units
    cameras: tuple[str, ...]
    weight: float  # share of sequences


SITES: tuple[Site, ...] = (
    Site("west", (58, 60, 64), 1.00, (1.00, 1.00, 1.00), 0.4, 4.0, ("cam1", "cam2"), 0.45),
    Site("north", (46, 74, 52), 1.10, (1.08, 1.00, 0.86), 0.9, 5.0, ("cam1",), 0.35),
    # The "new site": darker, cooler light, noisier sensor, more blur.
    Site("east", (40, 52, 80), 0.72, (0.88, 0.97, 1.12), 1.3, 9.0, ("cam1",), 0.20),
)

# A box must keep this share of its object's pixels (and this many pixels) to be labeled:
# annotators do not box a sliver of an occluded object.
MIN_VISIBLE_FRACTION = 0.30
MIN_VISIBLE_PIXELS = 40
FPS = 10.0


@dataclass(frozen=True)
class SynthConfig:
    frames: int = 1000
    seed: int = 0
    width: int = 320
    height: int = 240
    frames_per_sequence: tuple[int, int] = (6, 14)  # inclusive range
    objects_per_frame: tuple[float, float] = (3.0, 9.0)  # clutter density range per sequence
    belt_speed_px: tuple[float, float] = (10.0, 26.0)  # per frame at 10 fps
    jpeg_quality: int = 90
    workers: int = 1
    start: dt.datetime = dt.datetime(2026, 11, 2, 6, 0, 0)


@dataclass
class SynthSummary:
    out: str
    frames: int
    sequences: int
    objects: int
    class_counts: dict[str, int]
    seconds: float
    frames_per_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.frames_per_s = round(self.frames / self.seconds, 1) if self.seconds else 0.0

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- object sprites
def _rgba(rgb, alpha=255) -> tuple[int, int, int, int]:
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]), int(alpha))


def _jitter(rng: np.random.Generator, rgb, amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _irregular_polygon(rng, cx, cy, radius, n_points, spikiness) -> list[tuple[float, float]]:
    angles = np.sort(rng.uniform(0, 2 * math.pi, n_points))
    radii = radius * (1 + rng.uniform(-spikiness, spikiness, n_points))
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)]


def _draw_cardboard(rng, draw: ImageDraw.ImageDraw, w, h):
    base = _jitter(rng, (164, 120, 74), 20)
    draw.rectangle([0, 0, w - 1, h - 1], fill=_rgba(base))
    for x in range(2, w, int(rng.integers(3, 6))):  # corrugation
        draw.line([(x, 0), (x, h - 1)], fill=_rgba(_jitter(rng, (140, 100, 60), 10)), width=1)
    if rng.random() < 0.7:  # packing tape
        y = int(h * rng.uniform(0.35, 0.6))
        draw.rectangle([0, y, w - 1, y + max(2, h // 8)], fill=_rgba((200, 180, 140), 230))
    if rng.random() < 0.6:  # printed logo
        x0, y0 = int(w * 0.15), int(h * 0.15)
        draw.rectangle([x0, y0, x0 + w // 4, y0 + h // 5], fill=_rgba(_jitter(rng, (40, 40, 120), 40)))
    if rng.random() < 0.5:  # folded corner
        draw.polygon([(w - 1, 0), (w - 1 - w // 3, 0), (w - 1, h // 3)], fill=(0, 0, 0, 0))


def _draw_paper(rng, draw, w, h):
    points = _irregular_polygon(rng, w / 2, h / 2, min(w, h) / 2 * 0.95, int(rng.integers(7, 13)), 0.25)
    draw.polygon(points, fill=_rgba(_jitter(rng, (232, 230, 222), 12)))
    for y in range(int(h * 0.25), int(h * 0.8), int(rng.integers(3, 6))):  # text lines
        x0 = int(w * rng.uniform(0.2, 0.3))
        draw.line([(x0, y), (int(w * rng.uniform(0.6, 0.8)), y)], fill=_rgba((90, 90, 100), 200), width=1)
    for _ in range(3):  # crumple shading
        p = _irregular_polygon(rng, rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, min(w, h) / 5, 5, 0.4)
        draw.polygon(p, fill=_rgba((200, 198, 190), 150))


def _draw_pet_bottle(rng, draw, w, h):
    tint = _jitter(rng, rng.choice([(170, 210, 235), (190, 230, 200), (225, 230, 235)]), 10)
    neck = max(3, w // 3)
    draw.rounded_rectangle([0, h // 5, w - 1, h - 1], radius=max(2, w // 3), fill=_rgba(tint, 170))
    draw.rectangle([(w - neck) // 2, h // 12, (w + neck) // 2, h // 5 + 2], fill=_rgba(tint, 190))
    cap = _jitter(rng, rng.choice([(30, 90, 200), (220, 40, 40), (250, 250, 250), (30, 150, 60)]), 20)
    draw.rectangle([(w - neck) // 2 - 1, 0, (w + neck) // 2 + 1, h // 12], fill=_rgba(cap))
    band = _jitter(rng, rng.choice([(230, 30, 40), (40, 60, 200), (250, 200, 0)]), 20)
    y0 = int(h * rng.uniform(0.4, 0.55))
    draw.rectangle([0, y0, w - 1, y0 + h // 6], fill=_rgba(band, 235))
    draw.line([(w // 4, h // 4), (w // 4, h - 4)], fill=(255, 255, 255, 200), width=max(1, w // 8))


def _draw_hdpe(rng, draw, w, h):
    body = _jitter(rng, rng.choice([(240, 240, 235), (250, 220, 60), (60, 110, 200), (235, 120, 40)]), 15)
    draw.rounded_rectangle([0, h // 6, w - 1, h - 1], radius=max(2, w // 6), fill=_rgba(body))
    draw.rectangle([w // 6, 0, w // 2, h // 6 + 2], fill=_rgba(_jitter(rng, body, 25)))
    hx0, hy0 = int(w * 0.55), int(h * 0.05)
    draw.ellipse([hx0, hy0, w - 2, int(h * 0.45)], outline=_rgba(body), width=max(2, w // 10))
    draw.ellipse([hx0 + w // 10, hy0 + h // 12, w - 2 - w // 10, int(h * 0.38)], fill=(0, 0, 0, 0))
    draw.rectangle([w // 5, int(h * 0.55), int(w * 0.8), int(h * 0.8)], fill=_rgba(_jitter(rng, (80, 80, 80), 60), 220))


def _draw_can(rng, draw, w, h):
    label = _jitter(rng, rng.choice([(200, 20, 30), (20, 60, 160), (240, 240, 240), (20, 140, 60), (30, 30, 30)]), 20)
    for x in range(w):  # metallic cylinder shading
        shade = 0.55 + 0.45 * math.sin(math.pi * (x + 0.5) / w)
        draw.line([(x, 0), (x, h - 1)], fill=_rgba(tuple(int(c * shade) for c in label)))
    rim = (200, 200, 205)
    draw.rectangle([0, 0, w - 1, max(1, h // 10)], fill=_rgba(rim))
    draw.rectangle([0, h - 1 - max(1, h // 10), w - 1, h - 1], fill=_rgba(rim))
    draw.line([(w // 3, 2), (w // 3, h - 3)], fill=(255, 255, 255, 170), width=max(1, w // 10))
    if rng.random() < 0.35:  # crushed: bite a notch out of one side
        draw.polygon([(w - 1, h * 0.3), (w * 0.6, h * 0.5), (w - 1, h * 0.7)], fill=(0, 0, 0, 0))


def _draw_film(rng, draw, w, h):
    tint = _jitter(rng, rng.choice([(235, 235, 240), (40, 40, 45), (200, 220, 240), (240, 200, 200)]), 10)
    points = _irregular_polygon(rng, w / 2, h / 2, min(w, h) / 2 * 0.95, int(rng.integers(9, 16)), 0.35)
    draw.polygon(points, fill=_rgba(tint, 120))
    for _ in range(int(rng.integers(3, 7))):  # wrinkles catch the light
        x0, y0 = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        draw.line([(x0, y0), (x0 + rng.uniform(-w, w) / 3, y0 + rng.uniform(-h, h) / 3)], fill=(255, 255, 255, 150), width=1)


def _draw_glass(rng, draw, w, h):
    tint = _jitter(rng, rng.choice([(40, 110, 50), (110, 60, 20), (190, 215, 205)]), 12)
    neck = max(3, w // 3)
    draw.ellipse([0, h // 3, w - 1, h - 1], fill=_rgba(tint, 225))
    draw.rectangle([0, int(h * 0.45), w - 1, int(h * 0.9)], fill=_rgba(tint, 225))
    draw.polygon([(0, int(h * 0.45)), (w - 1, int(h * 0.45)), ((w + neck) // 2, h // 5), ((w - neck) // 2, h // 5)], fill=_rgba(tint, 225))
    draw.rectangle([(w - neck) // 2, 0, (w + neck) // 2, h // 5], fill=_rgba(tint, 225))
    draw.line([(int(w * 0.7), int(h * 0.4)), (int(w * 0.7), int(h * 0.85))], fill=(255, 255, 255, 210), width=max(1, w // 8))


def _draw_battery(rng, draw, w, h):
    if rng.random() < 0.75:  # cylindrical AA/AAA cell
        body = _jitter(rng, rng.choice([(20, 20, 20), (30, 60, 170), (200, 120, 20)]), 10)
        draw.rectangle([0, h // 8, w - 1, h - 1], fill=_rgba(body))
        draw.rectangle([0, int(h * 0.7), w - 1, h - 1], fill=_rgba((190, 140, 50)))  # copper top band
        draw.rectangle([w // 3, 0, w - 1 - w // 3, h // 8], fill=_rgba((210, 210, 215)))  # + terminal
        draw.line([(w // 4, h // 4), (w // 4, int(h * 0.65))], fill=(255, 255, 255, 180), width=1)
    else:  # 9V block
        draw.rectangle([0, h // 6, w - 1, h - 1], fill=_rgba(_jitter(rng, (30, 30, 35), 10)))
        draw.rectangle([0, int(h * 0.5), w - 1, int(h * 0.75)], fill=_rgba((220, 180, 0)))
        draw.rectangle([1, 0, w // 3, h // 6], fill=_rgba((200, 200, 205)))
        draw.rectangle([w - 1 - w // 3, 0, w - 2, h // 6], fill=_rgba((200, 200, 205)))


# (drawer, size range as a fraction of the frame's shorter side, aspect h/w range)
SPRITES = {
    "cardboard": (_draw_cardboard, (0.22, 0.42), (0.6, 1.4)),
    "paper": (_draw_paper, (0.16, 0.30), (0.7, 1.3)),
    "pet_bottle": (_draw_pet_bottle, (0.18, 0.30), (2.2, 3.0)),
    "hdpe_container": (_draw_hdpe, (0.17, 0.28), (1.1, 1.5)),
    "aluminum_can": (_draw_can, (0.10, 0.16), (1.6, 2.0)),
    "film": (_draw_film, (0.22, 0.38), (0.6, 1.4)),
    "glass": (_draw_glass, (0.13, 0.20), (2.0, 2.8)),
    "battery": (_draw_battery, (0.06, 0.09), (1.8, 2.6)),
}


def make_sprite(rng: np.random.Generator, class_name: str, short_side: int) -> Image.Image:
    drawer, size_range, aspect_range = SPRITES[class_name]
    h_over_w = rng.uniform(*aspect_range)
    area_side = rng.uniform(*size_range) * short_side
    w = max(6, int(area_side / math.sqrt(h_over_w)))
    h = max(6, int(area_side * math.sqrt(h_over_w)))
    sprite = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    drawer(rng, ImageDraw.Draw(sprite), w, h)
    return sprite


# ----------------------------------------------------------------------------- sequences
@dataclass
class _Object:
    class_name: str
    sprite: Image.Image
    x: float  # centre, belt coordinates (px)
    y: float
    angle: float  # degrees
    spin: float  # degrees per frame (tumbling)
    drift: float  # px per frame sideways


def _belt_texture(rng, site: Site, width: int, length: int) -> np.ndarray:
    """The belt strip the camera slides over: base colour, grain, seams and stains, float32 HxWx3."""
    belt = np.empty((length, width, 3), np.float32)
    belt[:] = np.array(site.belt_rgb, np.float32)
    belt += rng.normal(0, 6, (length, width, 1)).astype(np.float32)  # rubber grain
    for y in range(int(rng.integers(0, 40)), length, int(rng.integers(60, 120))):  # seams
        belt[y : y + 2] *= 0.7
    for _ in range(max(1, length // 80)):  # stains and residue
        cy, cx = rng.integers(0, length), rng.integers(0, width)
        r = int(rng.integers(4, 18))
        y0, y1, x0, x1 = max(0, cy - r), min(length, cy + r), max(0, cx - r), min(width, cx + r)
        belt[y0:y1, x0:x1] *= rng.uniform(0.75, 1.2)
    return belt


def _pick_class(rng: np.random.Generator) -> str:
    names = list(CLASS_FREQUENCIES)
    p = np.array([CLASS_FREQUENCIES[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _render_sequence(args: tuple[int, SynthConfig, int, str]) -> list[dict]:
    """Render one sequence; returns per-frame records (file name, boxes)."""
    sequence_index, config, n_frames, out = args
    rng = np.random.default_rng([config.seed, sequence_index])
    site_weights = np.array([s.weight for s in SITES])
    site = SITES[int(rng.choice(len(SITES), p=site_weights / site_weights.sum()))]
    camera = site.cameras[int(rng.integers(len(site.cameras)))]
    W, H = config.width, config.height
    speed = rng.uniform(*config.belt_speed_px)
    length = int(H + speed * n_frames + 2 * H)
    belt = _belt_texture(rng, site, W, length)
    density = rng.uniform(*config.objects_per_frame)
    n_objects = int(round(density * length / H))
    short_side = min(W, H)
    objects = [
        _Object(
            class_name=(cls := _pick_class(rng)),
            sprite=make_sprite(rng, cls, short_side),
            x=rng.uniform(0.08, 0.92) * W,
            y=rng.uniform(0, length),
            angle=rng.uniform(0, 360),
            spin=rng.normal(0, 2.5),
            drift=rng.normal(0, 0.6),
        )
        for _ in range(n_objects)
    ]
    light = site.light_gain * rng.uniform(0.92, 1.08)
    # fixed vignette of the site's lamp: brighter in the middle of the belt
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    vignette = 1.0 - 0.25 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2) * 4
    sequence = f"seq{sequence_index:05d}"
    seq_start = config.start + dt.timedelta(seconds=sequence_index * 30 + float(rng.uniform(0, 20)))
    folder = Path(out) / "images" / site.name / camera / sequence
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for t in range(n_frames):
        offset = length - H - H - speed * t  # the belt moves towards larger y in the image
        canvas = Image.fromarray(np.clip(belt[int(offset) : int(offset) + H], 0, 255).astype(np.uint8), "RGB").convert("RGBA")
        owner = np.full((H, W), -1, np.int32)
        full_area: dict[int, int] = {}
        for k, obj in enumerate(objects):
            sprite = obj.sprite.rotate(obj.angle + obj.spin * t, expand=True, resample=Image.BILINEAR)
            sx = int(obj.x + obj.drift * t - sprite.width / 2)
            sy = int(obj.y - offset - sprite.height / 2)
            if sy >= H or sx >= W or sy + sprite.height <= 0 or sx + sprite.width <= 0:
                continue
            alpha = np.asarray(sprite.getchannel("A")) > 96
            full_area[k] = int(alpha.sum())
            # paste, then record which object owns each visible pixel (later objects occlude)
            canvas.alpha_composite(sprite, (max(sx, 0), max(sy, 0)), (max(-sx, 0), max(-sy, 0)))
            y0, x0 = max(sy, 0), max(sx, 0)
            y1, x1 = min(sy + sprite.height, H), min(sx + sprite.width, W)
            sub = alpha[y0 - sy : y1 - sy, x0 - sx : x1 - sx]
            owner[y0:y1, x0:x1][sub] = k
        image = np.asarray(canvas.convert("RGB"), np.float32)
        image *= light * vignette[..., None] * np.array(site.tint, np.float32)
        image += rng.normal(0, site.noise, image.shape).astype(np.float32)
        frame = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
        if site.blur > 0:
            frame = frame.filter(ImageFilter.GaussianBlur(site.blur))
        boxes = []
        for k, area in full_area.items():
            visible = owner == k
            n_visible = int(visible.sum())
            if n_visible < MIN_VISIBLE_PIXELS or n_visible < MIN_VISIBLE_FRACTION * area:
                continue
            ys, xs = np.nonzero(visible)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            boxes.append({"label": objects[k].class_name, "xywh_px": [x0, y0, x1 - x0, y1 - y0]})
        captured_at = seq_start + dt.timedelta(seconds=t / FPS)
        stamp = captured_at.strftime("%Y%m%dT%H%M%S.%f")[:-3]
        name = f"{site.name}_{camera}_{sequence}_{t:04d}_{stamp}.jpg"
        exif = Image.Exif()
        exif[0x0132] = captured_at.strftime("%Y:%m:%d %H:%M:%S")
        frame.save(folder / name, quality=config.jpeg_quality, exif=exif)
        records.append(
            {
                "file_name": str((folder / name).relative_to(Path(out) / "images")),
                "width": W,
                "height": H,
                "site": site.name,
                "camera": camera,
                "sequence": f"{site.name}/{camera}/{sequence}",
                "captured_at": captured_at.isoformat(timespec="milliseconds"),
                "boxes": boxes,
            }
        )
    return records


def sequence_lengths(config: SynthConfig) -> list[int]:
    """How many frames each sequence gets, summing exactly to ``config.frames``."""
    rng = np.random.default_rng([config.seed, 2**31])
    lengths: list[int] = []
    remaining = config.frames
    lo, hi = config.frames_per_sequence
    while remaining > 0:
        n = min(int(rng.integers(lo, hi + 1)), remaining)
        lengths.append(n)
        remaining -= n
    return lengths


def generate(out: str | Path, config: SynthConfig, *, advance=lambda n=1: None) -> SynthSummary:
    """Write ``config.frames`` synthetic belt frames with COCO ground truth under ``out``."""
    started = time.perf_counter()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lengths = sequence_lengths(config)
    jobs = [(k, config, n, str(out)) for k, n in enumerate(lengths)]
    records: list[dict] = []
    if config.workers > 1:
        with ProcessPoolExecutor(config.workers) as pool:
            for recs in pool.map(_render_sequence, jobs, chunksize=4):
                records.extend(recs)
                advance(len(recs))
    else:
        for job in jobs:
            recs = _render_sequence(job)
            records.extend(recs)
            advance(len(recs))
    coco = to_coco(records)
    _write_atomic(out / "annotations.json", json.dumps(coco))
    _write_atomic(out / "classes.yaml", "".join(f"- {name}\n" for name in CLASSES))
    class_counts = {name: 0 for name in CLASSES}
    for rec in records:
        for box in rec["boxes"]:
            class_counts[box["label"]] += 1
    return SynthSummary(
        out=str(out),
        frames=len(records),
        sequences=len(lengths),
        objects=sum(class_counts.values()),
        class_counts=class_counts,
        seconds=round(time.perf_counter() - started, 3),
    )


def to_coco(records: list[dict]) -> dict:
    categories = [{"id": i + 1, "name": name, "supercategory": "waste"} for i, name in enumerate(CLASSES)]
    category_id = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for image_id, rec in enumerate(records, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": rec["file_name"],
                "width": rec["width"],
                "height": rec["height"],
                "site": rec["site"],
                "camera": rec["camera"],
                "sequence": rec["sequence"],
                "captured_at": rec["captured_at"],
            }
        )
        for box in rec["boxes"]:
            x, y, w, h = box["xywh_px"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id[box["label"]],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": annotations, "categories": categories}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
