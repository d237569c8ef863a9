"""Where ``flowops drift baseline`` sends a profile besides a file: Kafka and MLflow.

* :func:`publish_profile` puts it on the compacted ``flowops.references`` topic, keyed by
  model, as a :class:`~flowops.events.ReferenceProfile`: the stream workers' reference
  table picks it up, and windows that close after it are tested against it;
* :func:`log_profile` logs it to an MLflow run as the artifact ``flowops/profile.json``,
  beside the model it describes.

Both send the bytes :func:`profile_bytes` gives, which are also what ``-o FILE`` writes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from flowops.config import KafkaSettings, MlflowSettings

if TYPE_CHECKING:
    from flowops.drift import Profile
    from flowops.events import ReferenceProfile

__all__ = [
    "PROFILE_ARTIFACT",
    "log_profile",
    "profile_bytes",
    "publish_profile",
    "publish_profile_async",
]

PROFILE_ARTIFACT: Final = "flowops/profile.json"
"""The artifact path of the profile in an MLflow run."""

_SOURCE: Final = "/flowops/cli/drift-baseline"


def profile_bytes(profile: Profile) -> bytes:
    """The profile's JSON and a newline, as written to a file or an MLflow run."""
    return (profile.to_json() + "\n").encode()


def publish_profile(
    profile: Profile, kafka: KafkaSettings, *, model: str, version: str | None = None
) -> ReferenceProfile:
    """Publish the profile to ``flowops.references`` keyed by ``model``; wait for the ack.

    Creates the FlowOps topics that are missing first (as a worker does), so that the
    references topic is compacted. Raises :class:`~flowops.errors.BrokerError` when the
    broker does not answer or does not take the message.
    """
    return asyncio.run(publish_profile_async(profile, kafka, model=model, version=version))


async def publish_profile_async(
    profile: Profile, kafka: KafkaSettings, *, model: str, version: str | None = None
) -> ReferenceProfile:
    """:func:`publish_profile`, for a caller with a running event loop."""
    from flowops.events import EventProducer, ReferenceProfile, ensure_topics

    event = ReferenceProfile.from_profile(profile, model=model, version=version)
    await ensure_topics(kafka, kafka.partitions, replication=kafka.replication)
    async with EventProducer.from_settings(kafka, source=_SOURCE) as producer:
        await producer.publish(event)
    return event


def log_profile(
    profile: Profile, mlflow: MlflowSettings, run_id: str, *, path: str = PROFILE_ARTIFACT
) -> str:
    """Log the profile to MLflow run ``run_id`` as the artifact ``path``; its URI.

    Raises :class:`~flowops.errors.MlflowError` when the server does not answer or keeps
    the run's artifacts where FlowOps cannot write, InputError for an unknown run, and
    ConfigError when no tracking server is set.
    """
    from flowops.mlflow import MlflowClient

    client = MlflowClient.from_settings(mlflow)
    return client.log_artifact(run_id, path, profile_bytes(profile))
