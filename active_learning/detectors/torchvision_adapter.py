"""torchvision detection models as beltcurate ``Detector``s: architectures, probabilities, embeddings.

Supported families and what ``Detections.probs`` holds for them:

    fasterrcnn  softmax (n, C+1), background last. torchvision's postprocess flattens each
                proposal's softmax into per-class candidates and keeps only the winning entry;
                ``_ProbRoIHeads`` carries the proposal row through the same filtering and
                returns the full softmax row of every kept box.
    ssd         softmax (n, C+1), background last (same recovery, anchor rows).
    retinanet   sigmoid (n, C): every class's sigmoid at the kept box's anchor.
    fcos        sigmoid (n, C): sqrt(sigmoid(cls) * sigmoid(centerness)) per class at the
                kept box's anchor -- the quantity FCOS itself ranks boxes by.

Label spaces: Faster R-CNN and SSD reserve torchvision label 0 for background, so they are built
with ``C + 1`` outputs and ``label = tv_label - 1``; RetinaNet and FCOS use sigmoid outputs with
``C`` columns and ``label = tv_label``. ``Detections.labels`` are always 0-based class indices.

The image embedding is the average-pooled output of every backbone/FPN level, concatenated,
captured by a forward hook during the detection pass (pooling only the valid, unpadded region of
each image, so an image's embedding does not depend on what it was batched with).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.ssd import SSD
from torchvision.ops import boxes as box_ops

from active_learning.detectors import DETECTORS, Detections
from curation.errors import InputError
from curation.registry import Registry

# Detections under this score are dropped by the model's own postprocess. Low on purpose: the
# uncertainty scores need the doubtful boxes too (the catalog stores only the top ones).
DEFAULT_SCORE_THRESH = 0.05
DEFAULT_DETECTIONS_PER_IMG = 100


@dataclass(frozen=True)
class ArchSpec:
    """How to build one architecture: ``build(n_classes, input_size_wh, **params) -> nn.Module``."""

    family: str  # fasterrcnn, retinanet, fcos, ssd
    build: Callable[..., nn.Module]
    description: str
    fixed_size: tuple[int, int] | None = None  # SSD resizes to a fixed (W, H) whatever input_size says
    defaults: dict = field(default_factory=dict)


ARCHS: Registry[ArchSpec] = Registry("detector architecture")
FAMILY_OUTPUTS_BACKGROUND = {"fasterrcnn": True, "ssd": True, "retinanet": False, "fcos": False}


# ----------------------------------------------------------------------------- light backbone
class MobileNetV3SmallFPN(nn.Module):
    """MobileNetV3-small trunk (random init) + a narrow FPN: levels "0", "1", "2" at strides 8/16/32.

    ``pool=True`` adds a max-pooled stride-64 level "pool" (Faster R-CNN's RPN uses it).
    """

    # features[3]: 24 ch @ stride 8, features[8]: 48 ch @ 16, features[11]: 96 ch @ 32
    RETURN_INDICES = (3, 8, 11)

    def __init__(self, out_channels: int = 64, pool: bool = False):
        super().__init__()
        from torchvision.models import mobilenet_v3_small
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        features = mobilenet_v3_small(weights=None).features[: max(self.RETURN_INDICES) + 1]
        self.body = IntermediateLayerGetter(features, {str(i): str(k) for k, i in enumerate(self.RETURN_INDICES)})
        in_channels = [features[i].out_channels for i in self.RETURN_INDICES]
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool() if pool else None)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(self.body(x))


def _size_kwargs(input_size: Sequence[int]) -> dict:
    width, height = int(input_size[0]), int(input_size[1])
    return {"min_size": min(width, height), "max_size": max(width, height)}


def _build_fcos_mnv3s(n_classes: int, input_size, *, fpn_channels: int = 64, head_convs: int = 2) -> nn.Module:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    backbone = MobileNetV3SmallFPN(fpn_channels)
    # FCOS reads each level's regression range off the anchor size (4x..8x of it): one size per stride.
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)
    head = FCOSHead(fpn_channels, 1, n_classes, num_convs=head_convs)
    return FCOS(backbone, n_classes, anchor_generator=anchors, head=head, score_thresh=DEFAULT_SCORE_THRESH,
                detections_per_img=DEFAULT_DETECTIONS_PER_IMG, **_size_kwargs(input_size))


def _build_retinanet_mnv3s(n_classes: int, input_size, *, fpn_channels: int = 64) -> nn.Module:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNetHead

    backbone = MobileNetV3SmallFPN(fpn_channels)
    sizes = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in (16, 32, 64))
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    head = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], n_classes,
                         norm_layer=partial(nn.GroupNorm, 16))
    return RetinaNet(backbone, n_classes, anchor_generator=anchors, head=head, score_thresh=DEFAULT_SCORE_THRESH,
                     detections_per_img=DEFAULT_DETECTIONS_PER_IMG, **_size_kwargs(input_size))


def _build_fasterrcnn_mnv3s_fpn(n_classes: int, input_size, *, fpn_channels: int = 64,
                                representation: int = 256) -> nn.Module:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    backbone = MobileNetV3SmallFPN(fpn_channels, pool=True)
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    roi_pool = MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2)
    return FasterRCNN(
        backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
        box_head=TwoMLPHead(fpn_channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, n_classes + 1),
        # Fewer proposals than the ImageNet-sized defaults: a 256x192 belt frame holds < 20 objects.
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150, box_batch_size_per_image=128,
        box_score_thresh=DEFAULT_SCORE_THRESH, box_detections_per_img=DEFAULT_DETECTIONS_PER_IMG,
        **_size_kwargs(input_size),
    )


def _stock(builder_name: str, background: bool, fixed: bool = False):
    def build(n_classes: int, input_size, **params) -> nn.Module:
        import torchvision.models.detection as tvd

        kwargs = dict(weights=None, weights_backbone=None, num_classes=n_classes + (1 if background else 0))
        if not fixed:
            kwargs.update(_size_kwargs(input_size))
        kwargs.update(params)
        return getattr(tvd, builder_name)(**kwargs)

    return build


ARCHS.register("fcos_mnv3s")(ArchSpec("fcos", _build_fcos_mnv3s,
    "FCOS on a MobileNetV3-small + 64-ch FPN (the demo detector; trains from scratch on 2 CPU cores)"))
ARCHS.register("retinanet_mnv3s")(ArchSpec("retinanet", _build_retinanet_mnv3s,
    "RetinaNet on a MobileNetV3-small + 64-ch FPN"))
ARCHS.register("fasterrcnn_mnv3s_fpn")(ArchSpec("fasterrcnn", _build_fasterrcnn_mnv3s_fpn,
    "Faster R-CNN on a MobileNetV3-small + 64-ch FPN (1.9M parameters)"))
for _name, _family in (
    ("fasterrcnn_resnet50_fpn", "fasterrcnn"),
    ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn"),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn"),
    ("retinanet_resnet50_fpn", "retinanet"),
    ("fcos_resnet50_fpn", "fcos"),
):
    ARCHS.register(_name)(ArchSpec(_family, _stock(_name, FAMILY_OUTPUTS_BACKGROUND[_family]), f"torchvision {_name}"))
ARCHS.register("ssd300_vgg16")(ArchSpec("ssd", _stock("ssd300_vgg16", True, fixed=True), "torchvision ssd300_vgg16",
                                        fixed_size=(300, 300)))
ARCHS.register("ssdlite320_mobilenet_v3_large")(ArchSpec(
    "ssd", _stock("ssdlite320_mobilenet_v3_large", True, fixed=True), "torchvision ssdlite320_mobilenet_v3_large",
    fixed_size=(320, 320)))


# ----------------------------------------------------------------------------- probability recovery
class _ProbRoIHeads(RoIHeads):
    """RoIHeads whose eval output also has ``probs``: the full softmax row of each kept box."""

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        device = class_logits.device
        num_classes = class_logits.shape[-1]
        boxes_per_image = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)
        pred_scores = F.softmax(class_logits, -1)
        all_boxes, all_scores, all_labels, all_probs = [], [], [], []
        for boxes, scores, image_shape in zip(pred_boxes.split(boxes_per_image, 0),
                                              pred_scores.split(boxes_per_image, 0), image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=device).view(1, -1).expand_as(scores)
            # The one addition to torchvision's version: the proposal row of every candidate.
            rows = torch.arange(scores.shape[0], device=device).view(-1, 1).expand_as(scores)
            flat_boxes = boxes[:, 1:].reshape(-1, 4)
            flat_scores, flat_labels, flat_rows = (t[:, 1:].reshape(-1) for t in (scores, labels, rows))
            inds = torch.where(flat_scores > self.score_thresh)[0]
            flat_boxes, flat_scores, flat_labels, flat_rows = (t[inds] for t in (flat_boxes, flat_scores, flat_labels, flat_rows))
            keep = box_ops.remove_small_boxes(flat_boxes, min_size=1e-2)
            flat_boxes, flat_scores, flat_labels, flat_rows = (t[keep] for t in (flat_boxes, flat_scores, flat_labels, flat_rows))
            keep = box_ops.batched_nms(flat_boxes, flat_scores, flat_labels, self.nms_thresh)[: self.detections_per_img]
            all_boxes.append(flat_boxes[keep])
            all_scores.append(flat_scores[keep])
            all_labels.append(flat_labels[keep])
            all_probs.append(scores[flat_rows[keep]])
        self._kept_probs = all_probs
        return all_boxes, all_scores, all_labels

    def forward(self, features, proposals, image_shapes, targets=None):
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if not self.training:
            for detection, probs in zip(result, self._kept_probs):
                detection["probs"] = probs
            self._kept_probs = []
        return result, losses


def _dense_postprocess(self, head_outputs, anchors, image_shapes, per_class_scores, decode):
    """RetinaNet/FCOS postprocess with each kept box's per-class score vector in ``probs``.

    Mirrors torchvision's implementation; ``per_class_scores(level_outputs) -> (A, C)`` gives the
    scores the model thresholds and ranks by, and the anchor index of each candidate is kept.
    """
    num_images = len(image_shapes)
    detections = []
    names = list(head_outputs)
    for index in range(num_images):
        anchors_per_image, image_shape = anchors[index], image_shapes[index]
        image_boxes, image_scores, image_labels, image_probs = [], [], [], []
        for level, anchors_per_level in enumerate(anchors_per_image):
            level_outputs = {name: head_outputs[name][level][index] for name in names}
            class_scores = per_class_scores(level_outputs)  # (A, C)
            num_classes = class_scores.shape[-1]
            flat = class_scores.flatten()
            keep_idxs = flat > self.score_thresh
            flat = flat[keep_idxs]
            topk_idxs = torch.where(keep_idxs)[0]
            num_topk = det_utils._topk_min(topk_idxs, self.topk_candidates, 0)
            flat, idxs = flat.topk(num_topk)
            topk_idxs = topk_idxs[idxs]
            anchor_idxs = torch.div(topk_idxs, num_classes, rounding_mode="floor")
            labels = topk_idxs % num_classes
            boxes = decode(level_outputs["bbox_regression"][anchor_idxs], anchors_per_level[anchor_idxs])
            image_boxes.append(box_ops.clip_boxes_to_image(boxes, image_shape))
            image_scores.append(flat)
            image_labels.append(labels)
            image_probs.append(class_scores[anchor_idxs])
        image_boxes, image_scores, image_labels, image_probs = (
            torch.cat(t, dim=0) for t in (image_boxes, image_scores, image_labels, image_probs))
        keep = box_ops.batched_nms(image_boxes, image_scores, image_labels, self.nms_thresh)[: self.detections_per_img]
        detections.append({"boxes": image_boxes[keep], "scores": image_scores[keep],
                           "labels": image_labels[keep], "probs": image_probs[keep]})
    return detections


class _ProbRetinaNet(RetinaNet):
    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        return _dense_postprocess(self, head_outputs, anchors, image_shapes,
                                  lambda out: torch.sigmoid(out["cls_logits"]), self.box_coder.decode_single)


class _ProbFCOS(FCOS):
    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        return _dense_postprocess(
            self, head_outputs, anchors, image_shapes,
            lambda out: torch.sqrt(torch.sigmoid(out["cls_logits"]) * torch.sigmoid(out["bbox_ctrness"])),
            self.box_coder.decode,
        )


class _ProbSSD(SSD):
    def postprocess_detections(self, head_outputs, image_anchors, image_shapes):
        pred_scores = F.softmax(head_outputs["cls_logits"], dim=-1)
        num_classes = pred_scores.size(-1)
        device = pred_scores.device
        detections = []
        for boxes, scores, anchors, image_shape in zip(head_outputs["bbox_regression"], pred_scores,
                                                       image_anchors, image_shapes):
            boxes = box_ops.clip_boxes_to_image(self.box_coder.decode_single(boxes, anchors), image_shape)
            image_boxes, image_scores, image_labels, image_rows = [], [], [], []
            for label in range(1, num_classes):
                score = scores[:, label]
                rows = torch.where(score > self.score_thresh)[0]
                score = score[rows]
                num_topk = det_utils._topk_min(score, self.topk_candidates, 0)
                score, idxs = score.topk(num_topk)
                rows = rows[idxs]
                image_boxes.append(boxes[rows])
                image_scores.append(score)
                image_labels.append(torch.full_like(score, fill_value=label, dtype=torch.int64, device=device))
                image_rows.append(rows)
            image_boxes, image_scores, image_labels, image_rows = (
                torch.cat(t, dim=0) for t in (image_boxes, image_scores, image_labels, image_rows))
            keep = box_ops.batched_nms(image_boxes, image_scores, image_labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": image_boxes[keep], "scores": image_scores[keep],
                               "labels": image_labels[keep], "probs": scores[image_rows[keep]]})
        return detections


def _install_prob_postprocess(model: nn.Module, family: str) -> nn.Module:
    """Swap in the subclasses above (same parameters and state, one overridden method)."""
    if family == "fasterrcnn":
        model.roi_heads.__class__ = _ProbRoIHeads
    elif family == "retinanet":
        model.__class__ = _ProbRetinaNet
    elif family == "fcos":
        model.__class__ = _ProbFCOS
    elif family == "ssd":
        model.__class__ = _ProbSSD
    else:  # pragma: no cover - guarded by ARCHS
        raise ValueError(family)
    return model


def build_model(arch: str, classes: Sequence[str], input_size: Sequence[int] = (256, 192),
                arch_params: dict | None = None) -> nn.Module:
    """A randomly initialised model of ``arch`` for ``classes`` that also returns per-box ``probs``."""
    spec = ARCHS.get(arch)
    if not classes:
        raise InputError("a detector needs at least one class; check the class map")
    model = spec.build(len(classes), tuple(input_size), **{**spec.defaults, **(arch_params or {})})
    return _install_prob_postprocess(model, spec.family)


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> None:
    """torchvision's MobileNetV3 uses BN momentum 0.01; from scratch, eval outputs then stay junk for
    hundreds of iterations while the loss falls. Training from scratch sets 0.1."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


# ----------------------------------------------------------------------------- embeddings
class _EmbeddingHook:
    """Forward hooks on ``model.transform`` and ``model.backbone``: pooled features per image."""

    def __init__(self, model: nn.Module):
        self.image_sizes: list[tuple[int, int]] = []
        self.padded: tuple[int, int] = (0, 0)
        self.features: list[torch.Tensor] = []
        model.transform.register_forward_hook(self._on_transform)
        model.backbone.register_forward_hook(self._on_backbone)

    def _on_transform(self, _module, _inputs, output) -> None:
        image_list = output[0]
        self.image_sizes = [tuple(s) for s in image_list.image_sizes]
        self.padded = tuple(image_list.tensors.shape[-2:])

    def _on_backbone(self, _module, _inputs, output) -> None:
        maps = list(output.values()) if isinstance(output, dict) else [output]
        pooled = []
        pad_h, pad_w = self.padded
        for fmap in maps:
            height, width = fmap.shape[-2:]
            per_image = []
            for i, (img_h, img_w) in enumerate(self.image_sizes):
                valid_h = max(1, min(height, math.ceil(img_h * height / pad_h)))
                valid_w = max(1, min(width, math.ceil(img_w * width / pad_w)))
                per_image.append(fmap[i, :, :valid_h, :valid_w].mean(dim=(1, 2)))
            pooled.append(torch.stack(per_image))
        self.features = [torch.cat(pooled, dim=1)]

    def take(self) -> np.ndarray:
        out = self.features[0].float().cpu().numpy() if self.features else None
        self.features = []
        return out


# ----------------------------------------------------------------------------- the adapter
def images_to_tensors(images: Sequence) -> list[torch.Tensor]:
    """``HxWx3`` uint8 RGB arrays -> ``3xHxW`` float32 tensors in [0, 1] (what torchvision expects).

    Items that are already such tensors (from ``TorchvisionDetector.prepare``) pass through.
    """
    tensors = []
    for image in images:
        if isinstance(image, torch.Tensor):
            if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
                raise InputError(f"prepared detector input must be a 3xHxW float tensor, got {tuple(image.shape)} "
                                 f"{image.dtype}")
            tensors.append(image)
            continue
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise InputError(f"detector input must be HxWx3 uint8 RGB, got shape {array.shape} dtype {array.dtype}")
        if not array.flags.writeable or not array.flags.c_contiguous:  # PIL hands out read-only views
            array = np.array(array, order="C")
        tensors.append(torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0))
    return tensors


class TorchvisionDetector:
    """A torchvision detection model behind the ``Detector`` protocol (CPU or GPU, eval mode)."""

    def __init__(self, model: nn.Module, *, arch: str, classes: Sequence[str], input_size: Sequence[int],
                 model_version: str, checkpoint: dict | None = None, device: str = "cpu"):
        self.arch = arch
        self.family = ARCHS.get(arch).family
        self.classes = list(classes)
        self.input_size = list(input_size)
        self.model_version = model_version
        self.meta = {k: v for k, v in (checkpoint or {}).items() if k != "state_dict"}
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self._hook = _EmbeddingHook(self.model)

    @property
    def probs_kind(self) -> str:
        return "softmax" if FAMILY_OUTPUTS_BACKGROUND[self.family] else "sigmoid"

    def forward_tensors(self, tensors: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The bare model forward on ``3xHxW`` float tensors (what the scoring benchmark times)."""
        with torch.inference_mode():
            return self.model([t.to(self.device) for t in tensors])

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """``HxWx3`` uint8 -> the ``3xHxW`` float tensor ``predict`` also accepts. The scoring engine
        calls this in its decode workers, so the conversion overlaps the forward pass."""
        return images_to_tensors([image])[0]

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """``images``: ``HxWx3`` uint8 RGB arrays, or tensors from ``prepare``."""
        if len(images) == 0:
            return []
        outputs = self.forward_tensors(images_to_tensors(images))
        embeddings = self._hook.take()
        return [self._to_detections(out, None if embeddings is None else embeddings[i]) for i, out in enumerate(outputs)]

    def _to_detections(self, out: dict[str, torch.Tensor], embedding: np.ndarray | None) -> Detections:
        boxes = out["boxes"].float().cpu().numpy()
        labels = out["labels"].cpu().numpy().astype(np.int64)
        scores = out["scores"].float().cpu().numpy()
        probs = out["probs"].float().cpu().numpy()
        if FAMILY_OUTPUTS_BACKGROUND[self.family]:
            labels = labels - 1
            probs = np.concatenate([probs[:, 1:], probs[:, :1]], axis=1)  # background column last
        return Detections(boxes, labels, scores, probs, embedding, self.probs_kind)


def checkpoint_dict(model: nn.Module, *, arch: str, classes: Sequence[str], input_size: Sequence[int],
                    model_version: str, arch_params: dict | None = None, **extra: Any) -> dict:
    """The dict ``torch.save`` writes for ``load_detector`` (see the package docstring)."""
    return {"state_dict": model.state_dict(), "arch": arch, "classes": list(classes),
            "input_size": [int(v) for v in input_size], "model_version": model_version,
            "adapter": "torchvision", "arch_params": dict(arch_params or {}), **extra}


def model_from_checkpoint(checkpoint: dict, path: str = "<checkpoint>") -> nn.Module:
    """Build the checkpoint's architecture and load its weights (strict)."""
    arch = checkpoint["arch"]
    if arch not in ARCHS:
        raise InputError(f"checkpoint {path!r} has arch {arch!r}; supported: {', '.join(ARCHS.names())}")
    model = build_model(arch, checkpoint["classes"], checkpoint.get("input_size", (256, 192)),
                        checkpoint.get("arch_params"))
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(
            f"checkpoint {path!r}: weights do not fit arch {arch!r} with {len(checkpoint['classes'])} classes "
            f"({first}); check 'arch', 'classes' and 'arch_params' in the file"
        ) from exc
    return model


@DETECTORS.register("torchvision")
def load_torchvision(checkpoint: dict, path: str, *, score_thresh: float | None = None,
                     device: str = "cpu") -> TorchvisionDetector:
    model = model_from_checkpoint(checkpoint, path)
    if score_thresh is not None:
        target = model.roi_heads if hasattr(model, "roi_heads") else model
        target.score_thresh = float(score_thresh)
    return TorchvisionDetector(model, arch=checkpoint["arch"], classes=checkpoint["classes"],
                               input_size=checkpoint.get("input_size", (256, 192)),
                               model_version=str(checkpoint["model_version"]), checkpoint=checkpoint, device=device)
