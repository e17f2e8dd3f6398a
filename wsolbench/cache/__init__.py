"""The HDF5 map cache: one file per evaluated run, from which every metric is recomputed.

A run's evaluation writes, for each test image, its fine-class logits, the fused
localization map of the predicted class and of the ground-truth class, the method's extra
maps (:meth:`wsolbench.specs.Method.extra_maps`), and the image's ground truth. Metrics and
tables are then computed from this file only (:func:`wsolbench.evaluate.evaluate_cache`),
so a metric can change without re-running a model. The layout is described in
``docs/cache.md``; :data:`SCHEMA_VERSION` changes whenever it changes incompatibly.

Writing is streamed (:class:`CacheWriter` appends batches, a 50k-image evaluation never
holds all maps in memory) and atomic (a temporary file is renamed onto the final path
only after every image was written). Reading (:func:`read_cache`) validates the file
and is lazy: maps are read from disk when sliced.

Map encodings (measured in ``docs/cache.md``):

* ``"uint8"`` stores ``q = floor(map * 255)``, exactly the quantisation the box metrics
  apply to a map before thresholding, and is read back as ``q / 255`` (float32), which
  those metrics quantise back to the same ``q``: lossless for every box metric.
* ``"float32"`` stores the map as is. PxAP histograms the *float* scores over the
  ``cam_curve_interval`` grid, and uint8 (and float16) storage moves scores across grid
  edges, changing PxAP; so the ground-truth-class map, which PxAP uses, is stored as
  float32 whenever the dataset has masks.

Modules: :mod:`~wsolbench.cache.meta` (schema, config hash, fingerprint, metadata),
:mod:`~wsolbench.cache.maps` (encodings), :mod:`~wsolbench.cache.writer`,
:mod:`~wsolbench.cache.reader`; everything public is importable from ``wsolbench.cache``.
"""

from wsolbench.cache.maps import MapStore, dequantize_maps, quantize_maps
from wsolbench.cache.meta import (
    CACHE_FILENAME,
    NON_RESULT_KEYS,
    READABLE_SCHEMAS,
    REBUILD_HINT,
    SCHEMA_VERSION,
    CacheError,
    CacheMeta,
    config_hash,
    dataset_fingerprint,
)
from wsolbench.cache.reader import ExtraMaps, RunCache, read_cache, read_meta, resolve_cache_path
from wsolbench.cache.writer import LOGITS_MAX_CLASSES, CacheWriter, top5_from_logits

__all__ = [
    "CACHE_FILENAME",
    "LOGITS_MAX_CLASSES",
    "NON_RESULT_KEYS",
    "READABLE_SCHEMAS",
    "REBUILD_HINT",
    "SCHEMA_VERSION",
    "CacheError",
    "CacheMeta",
    "CacheWriter",
    "ExtraMaps",
    "MapStore",
    "RunCache",
    "config_hash",
    "dataset_fingerprint",
    "dequantize_maps",
    "quantize_maps",
    "read_cache",
    "read_meta",
    "resolve_cache_path",
    "top5_from_logits",
]
