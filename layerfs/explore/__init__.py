"""Tools that explain an image without mounting it, built on the mount's own index.

- :mod:`.which`: where a path comes from, what it shadows, what hides it;
- :mod:`.diff`: what a layer (or an image) changed, entry by entry;
- :mod:`.usage`: where the bytes go, wasted space, an efficiency score;
- :mod:`.compare`: a layerfs mount against the kernel overlay or a directory;
- :mod:`.commit`: an overlay upper dir to an OCI layer tar (and a new image);
- :mod:`.provenance`: the layer-level questions (versions of a path, who hides it);
- :mod:`.render`: tables, sizes, colour, JSON;
- :mod:`.cli`: the subcommands.

No module here implements a merge rule: they ask :class:`~layerfs.index.PathIndex`
(the merged tree), its layer views (:class:`~layerfs.layerview.LayerView`, one
layer's own entries with its recorded metadata) and :func:`~layerfs.merge.merge_children`.
"""
