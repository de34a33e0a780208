"""Everything in beltcurate that reads pixels or vectors.

- ``detectors``: the ``Detector`` protocol, ``Detections`` and the torchvision adapters;
- ``uncertainty``: pure-numpy box -> image uncertainty scores (registry ``UNCERTAINTY``);
- ``embeddings``: the on-disk vector store and PCA / normalisation helpers;
- ``engine``: batched scoring (torch DataLoader locally, Ray Data across machines);
- ``train``: the reference trainer and COCO evaluation used by the demo and the simulation.

torch, torchvision, faiss and ray are imported inside the functions that need them, so importing
this package (and ``beltcurate --help``) stays fast.
"""
