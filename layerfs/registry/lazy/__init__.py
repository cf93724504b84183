"""Lazy mounts of registry images (``layerfs mount --lazy docker://...``).

A layer whose files can be located inside its blob without reading all of it
is mounted from its table of contents alone, its file data fetched with HTTP
range requests on first open:

- :mod:`.toc`: the tables of contents: zstd:chunked (its TOC, by the position
  and checksum annotations of the layer's descriptor), eStargz (its TOC, by the
  footer, checked against the ``toc.digest`` annotation) and uncompressed tars
  (their headers, read by ranges); each becomes tar members plus where each
  file's data is;
- :mod:`.skeleton`: the layer's directory with every entry's metadata and
  sparse regular files (written by the unpacker's own LayerWriter), in
  ``<cache>/lazy/``;
- :mod:`.content`: fetching a file's data on first open (the
  :class:`layerfs.layer.ContentSource` of the FUSE ops);
- :mod:`.open`: which layers can be lazy, and the image as mountable layers;
- :mod:`.background`: the layers pulled whole behind the live mount.

Other layers (plain gzip, plain zstd) cannot be read in parts: :mod:`.background`
pulls them whole once the mount is live; until they are present the mount's
tree is not known, and requests wait for it (:mod:`layerfs.deferred`).
"""
