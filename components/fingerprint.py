"""Stage 0: a cheap fingerprint of the raw data, so KFP's cache notices new images.

KFP keys a task's cache on its inputs, and ``s3://bucket/raw`` stays the same string when
new images land under it. This step lists the keys, sizes and ETags (no image is read) and
hashes them; preprocessing takes the hash as an input, so a recurring run reuses cached
preprocessing only while the listing is unchanged. This step itself is never cached.
"""

from typing import NamedTuple

from kfp import dsl

from components.core.settings import default_images


# The image is set per task by build_pipeline (CompileSettings.image); this is its default.
@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def fingerprint_data(data_uri: str) -> NamedTuple("DataFingerprint", fingerprint=str, image_count=int):
    """List ``data_uri`` (keys, sizes, ETags), check its layout and hash the listing."""
    from collections import namedtuple

    from components.core.data.dataset import scan_raw

    scan = scan_raw(data_uri)  # fails here, before any decoding, when the layout is wrong
    print(f"{data_uri}: {len(scan.images)} images, {len(scan.skipped)} non-image files, fingerprint {scan.fingerprint}")
    return namedtuple("DataFingerprint", ["fingerprint", "image_count"])(scan.fingerprint, len(scan.images))
