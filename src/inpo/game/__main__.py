"""python -m inpo.game: the tabular experiment (conf/lab.yaml) as a Hydra app."""

from __future__ import annotations

import logging

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from inpo.config import hydra_app
from inpo.game import experiment

log = logging.getLogger(__name__)


@hydra_app("lab")
def main(cfg: DictConfig) -> None:
    out = HydraConfig.get().runtime.output_dir
    m = experiment.run(cfg, out)
    for method in ("inpo", "bt_dpo"):
        log.info("%s: final duality gap %.3g, KL to regularized Nash %.3g",
                 method, m[method]["duality_gap"][-1], m[method]["kl_to_nash"][-1])
    log.info("wrote %s/metrics.json and curves.png", out)


if __name__ == "__main__":
    main()
