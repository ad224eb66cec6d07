"""The one adapter between a trial and NNI's trial channel, through NNI's public runtime API.

An nnictl trial that runs a NAS experiment in-process (BASE's meta-training does, with NNI's
sequential engine) shares NNI's module-level trial state with that engine: the engine swaps the
default channel and calls ``nni.get_next_parameter()`` itself, so ``nni.report_*`` calls made around
it would carry the engine's parameter id. This adapter receives the trial's parameters once from the
channel NNI set up for the trial and reports on that same channel, with its own parameter id and
intermediate-result sequence, whatever the engine does meanwhile. NNI 3.0 has no public hook for this;
``tests/cli/test_trial.py`` pins the behaviour (metrics reach the trial's channel with its parameter id).
"""

from __future__ import annotations

from typing import Any

from nni.runtime.env_vars import trial_env_vars
from nni.runtime.trial_command_channel import TrialCommandChannel, get_default_trial_command_channel

__all__ = ['TrialChannel']


class TrialChannel:
    """The trial's own line to NNI's manager: receive the parameters once, report intermediate and final results."""

    def __init__(self, channel: TrialCommandChannel | None = None) -> None:
        self.channel = channel if channel is not None else get_default_trial_command_channel()
        self.record: Any = None
        self.sequence = 0

    def receive_parameters(self) -> dict[str, Any]:
        """The tuner's parameters for this trial (``{}`` outside NNI)."""
        self.record = self.channel.receive_parameter()
        return dict(self.record['parameters']) if self.record else {}

    def report_intermediate(self, value: float) -> None:
        """An intermediate result (one point of the web UI's trial curve)."""
        self._send('PERIODICAL', self.sequence, value)
        self.sequence += 1

    def report_final(self, metrics: dict[str, Any]) -> None:
        """The final result; ``metrics['default']`` is what the tuner optimises."""
        self._send('FINAL', 0, metrics)

    def _send(self, kind: str, sequence: int, value: Any) -> None:
        parameter_id = self.record['parameter_id'] if self.record else None
        self.channel.send_metric(
            type=kind,
            parameter_id=parameter_id,  # type: ignore[arg-type]
            trial_job_id=trial_env_vars.NNI_TRIAL_JOB_ID,
            sequence=sequence,
            value=value,
        )
