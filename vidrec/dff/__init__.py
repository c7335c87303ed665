"""Deep Feature Flow (Zhu et al., CVPR 2017): features of key frames carried along optical flow.

- `vidrec.dff.warp`: the bilinear feature warp exactly as the spec, and flow resizing;
- `vidrec.dff.model`: `DFF`, `ScaleField`, `BiasField`, `as_dff` (and the flow-net contract in its
  docstring);
- `vidrec.dff.schedule`: key-frame schedules, `FixedInterval` and our `Bidirectional` and `Adaptive`;
- `vidrec.dff.flownets`: flow sources (`FlowNetLite`, `DISFlow`, `RaftFlowNet`, `make_flow_net`);
- `vidrec.dff.pretrain`: self-supervised pretraining of `FlowNetLite` on unlabelled frames;
- `vidrec.dff.cli`: ``vidrec dff run`` (and the other ``vidrec dff`` subcommands).
"""

from vidrec.dff.model import DFF, SIGNALS, BiasField, ScaleField, as_dff
from vidrec.dff.schedule import Adaptive, Bidirectional, FixedInterval, Schedule
from vidrec.dff.warp import resize_flow, warp

__all__ = [
    "DFF",
    "SIGNALS",
    "Adaptive",
    "Bidirectional",
    "BiasField",
    "FixedInterval",
    "Schedule",
    "ScaleField",
    "as_dff",
    "resize_flow",
    "warp",
]
