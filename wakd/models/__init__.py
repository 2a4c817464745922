"""Models: backbone registry (:mod:`.backbones`), NetVLAD and EmbedNet (:mod:`.netvlad`), safe weight
loading (:mod:`.weights`), building a full network from files (:mod:`.build`).

This package file imports nothing heavy, so ``wakd --help`` stays fast; ``BACKBONE_NAMES`` mirrors
the registry (a test checks they agree), as the other names here mirror theirs.
"""

BACKBONE_NAMES = ("mobilenetv3_large", "mobilenetv3_small", "resnet152", "resnet18", "resnet50", "vgg16")
PRECISE_BN_IMAGES = 300  # images of precise BN by default (:mod:`.bn`)
REGION_LAYOUTS = ("wakd", "sfrs")  # the region layouts of :mod:`.regions`
#: backbone options at their defaults (a checkpoint that does not record one was built with it)
ARCH_DEFAULTS = {"last_layer": 3, "output_stride": 32, "width": 1.0, "input_norm": "none"}
