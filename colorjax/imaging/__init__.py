"""Images on disk and on screen: decoding every format and mode (``decoding``), writing
PNG/JPEG/WebP with EXIF atomically (``writing``), planning distinct output paths
(``output_plan``) and image grids for samples and figures (``visual``)."""
