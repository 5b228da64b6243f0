"""Print scaledobjects-cluster.yaml: one KEDA redis-cluster-streams trigger per partition stream."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from printery.redis.keys import partition_tags

STAGES = (
    ("validator", "deployment:started", "100"),
    ("dependency-checker", "deployment:validated", "50"),
    ("health-monitor", "deployment:dependencies-satisfied", "20"),
    ("notifier", "notifications", "50"),
)
HEADER = """\
# Generated for PARTITIONS=12 and STREAM_PREFIX=printery: one redis-cluster-streams
# trigger per partition stream of each stage (the tags printery.redis.keys.partition_tags(12)
# gives; tests/deploy/test_deploy_cluster.py checks them). KEDA scales on the largest of a
# ScaledObject's triggers, so a stage gets another replica when any one partition lags.
# Regenerate with: python deploy/k8s/overlays/cluster/triggers.py > scaledobjects-cluster.yaml"""


def render(partitions: int = 12) -> str:
    lines = [HEADER]
    for group, stream, lag in STAGES:
        lines += ["---", "apiVersion: keda.sh/v1alpha1", "kind: ScaledObject", "metadata:"]
        lines += [f"  name: printery-{group}", "spec:", "  triggers:"]
        for tag in partition_tags(partitions):
            lines += [
                "    - type: redis-cluster-streams",
                "      metadata:",
                "        addressesFromEnv: REDIS_ADDRESSES",
                f'        stream: "printery:{{{tag}}}:{stream}"',
                f"        consumerGroup: {group}",
                f'        lagCount: "{lag}"',
                '        activationLagCount: "1"',
                '        enableTLS: "true"',  # like the production overlay's rediss://
                "      authenticationRef:",
                "        name: printery-redis",
            ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
