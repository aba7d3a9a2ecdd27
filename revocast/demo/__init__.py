"""The live demo: Kafka, the faust worker, the reference identity service and three services
in different frameworks, each a separate process, then a scripted revocation scenario."""

from revocast.demo._run import run_demo
from revocast.demo._scenario import Outcome, ScenarioFailed, run_scenario
from revocast.demo._stack import ServiceSpec, StackConfig, render_compose, service_specs

__all__ = [
    "Outcome",
    "ScenarioFailed",
    "ServiceSpec",
    "StackConfig",
    "render_compose",
    "run_demo",
    "run_scenario",
    "service_specs",
]
