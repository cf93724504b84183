"""``layerfs browse``: a terminal browser of an image's layers and merged tree (dive's
job, on the explore tools' facts).

- :mod:`.model`: the layer rows, the tree as of a layer with its A/M/D/O marks, the
  views, the filter, the facts of one entry (pure: no UI);
- :mod:`.tree`: the file tree pane (textual's line API);
- :mod:`.app`: the textual application and its layout;
- :mod:`.cli`: the subcommand.
"""
