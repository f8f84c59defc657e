"""Inputs: photos, the preprocessing that turns them into model inputs, labelled datasets with
boxes and masks, and class names. A leaf of the package: it imports nothing else of camlens, so
every other layer may use it."""

from .datasets import Sample, load_dataset, load_voc
from .files import write_atomically
from .geometry import Box, box_in_photo, boxes_in_input, map_in_photo, mask_in_input
from .images import ImageBatch, ImageReadError, decode_image, fit_within, load_images, read_image
from .jsonl import RunMismatch, append_jsonl, read_jsonl, read_records, resume_records
from .labels import imagenet_classes, imagenet_wnids, resolve_class
from .preprocessing import FITS, Fit, Preprocessing
from .sources import IMAGE_SUFFIXES, image_paths, named_image_paths
from .stream import DISPLAY_MAX_SIDE, Photo, PhotoBatch, stream_photos

__all__ = [
    "Sample", "load_dataset", "load_voc", "Box", "boxes_in_input", "box_in_photo", "mask_in_input", "map_in_photo", "ImageBatch", "ImageReadError",
    "load_images", "read_image", "decode_image", "fit_within", "imagenet_classes", "imagenet_wnids", "resolve_class", "Preprocessing", "FITS", "Fit",
    "IMAGE_SUFFIXES", "image_paths", "named_image_paths", "Photo", "PhotoBatch", "stream_photos", "DISPLAY_MAX_SIDE", "read_jsonl",
    "append_jsonl", "resume_records", "read_records", "RunMismatch", "write_atomically",
]
