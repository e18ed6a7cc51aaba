"""Editing the test's still-open Allure result: the gpuhil outcome (status, message, the timeout
dump) and the labels (epic/feature/story from the suite layout, severity, outcome, category,
host GPU, guest configuration); and writing a result of its own for what has no open one (a
crashed worker's test, a QEMU that died between tests)."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from gpuhil.machine import Machine
from gpuhil.outcomes import ALLURE, Outcome, allure_message, classify
from gpuhil.pytestplugin.evidence import TestRecord
from gpuhil.pytestplugin.keys import NOT_REPRODUCED_KEY, ORIGIN_KEY
from gpuhil.report.machines import RunOrigin

__all__ = ["SEVERITIES", "add_origin", "allure_result", "apply", "guest_config", "suite_labels", "write_result"]

SEVERITIES = ("blocker", "critical", "normal", "minor", "trivial")


def allure_result(config: pytest.Config, nodeid: str) -> Any:
    """allure-pytest's TestResult of ``nodeid`` while it is still open (None without allure).

    allure-pytest has no public API to change a result's status; its listener's cache is the
    one place that maps a node id to the open result.
    """
    listener = config.pluginmanager.getplugin("allure_listener")
    if listener is None:
        return None
    uuid = listener._cache.get(nodeid)
    return listener.allure_logger.get_test(uuid) if uuid else None


def suite_labels(item_path: Path, rootdir: Path, name: str) -> dict[str, str]:
    """epic = top folder under suites/ (else the top folder), feature = subfolder or module,
    story = the test."""
    try:
        parts = list(item_path.relative_to(rootdir).parts)
    except ValueError:
        parts = [item_path.name]
    if parts and parts[0] == "suites":
        parts = parts[1:]
    module = Path(parts[-1]).stem.removeprefix("test_") if parts else ""
    folders = parts[:-1]
    epic = folders[0] if folders else module
    feature = "/".join(folders[1:]) if len(folders) > 1 else module
    return {"epic": epic, "feature": feature, "story": name}


def guest_config(machine: Machine | None) -> str:
    """``virtio-gpu-gl-pci,..., iommu=intel, ivshmem``: what the machine's guest has ("no guest"
    for a machine that is no lab guest)."""
    spec = getattr(machine, "spec", None)
    if spec is None:
        return "no guest"
    what = [spec.gpu.device_arg() if spec.gpu is not None else "no GPU"]
    if spec.iommu is not None:
        what.append(f"iommu={spec.iommu.value}")
    what += [type(d).__name__.lower() for d in spec.devices]
    return ", ".join(what)


def add_origin(item: pytest.Item, origin: RunOrigin) -> None:
    """The machine and host GPU as parameters of the test's open result (so they key its
    history: see :mod:`gpuhil.report.machines`)."""
    result = allure_result(item.config, item.nodeid)
    if result is None:
        return
    from allure_commons.model2 import Parameter

    have = {p.name for p in result.parameters}
    result.parameters.extend(Parameter(name=k, value=v) for k, v in origin.parameters().items()
                             if k not in have)


def _by_machine(result: Any, origin: RunOrigin) -> None:
    """The Suites tree starts at the machine: parentSuite becomes the machine and allure-pytest's
    package moves into the suite; the host label names the machine."""
    from allure_commons.model2 import Label

    values = {label.name: label.value for label in result.labels}
    parent, suite = values.get("parentSuite"), values.get("suite")
    result.labels = [label for label in result.labels
                     if label.name not in ("parentSuite", "suite", "host")]
    result.labels.append(Label(name="parentSuite", value=origin.machine))
    if suite or parent:
        result.labels.append(Label(name="suite", value=".".join(p for p in (parent, suite) if p)))
    result.labels.append(Label(name="host", value=origin.machine))


def apply(item: pytest.Item, record: TestRecord, origin: RunOrigin) -> None:
    """Decide the outcome and write it, with the labels, into the still-open Allure result."""
    outcome = classify(record.phases, timed_out=bool(record.timeout_kind),
                       kernel_log=record.kernel_log)
    record.outcome = outcome
    result = allure_result(item.config, item.nodeid)
    if result is None:
        return
    from allure_commons.model2 import Label, StatusDetails

    mapping = ALLURE[outcome]
    if outcome not in (Outcome.PASS, Outcome.SKIP):
        result.status = mapping.status
        details = result.statusDetails or StatusDetails()
        details.message = allure_message(outcome, details.message or record.interrupted
                                         or record.failure_text)
        if record.timeout_kind and record.dump:
            details.trace = (record.dump + "\n\n" + (details.trace or "")).strip()
        result.statusDetails = details
    note = item.stash.get(NOT_REPRODUCED_KEY, None)
    if note is not None:  # an untriaged known bug that passed on this (newer) stack
        details = result.statusDetails or StatusDetails()
        details.message = f"{note} ({details.message})" if details.message else note
        result.statusDetails = details
        result.labels.append(Label(name="tag", value=note))
    names = {label.name for label in result.labels}
    labels = suite_labels(Path(str(item.path)), Path(str(item.config.rootpath)),
                          getattr(item, "originalname", item.name))
    marker = item.get_closest_marker("severity")
    if marker is not None and marker.args and "severity" not in names:
        labels["severity"] = str(marker.args[0])
    labels["gpuhil.outcome"] = outcome.value
    labels["gpuhil.category"] = mapping.category.value
    labels["host_gpu"] = origin.gpu
    labels["guest_config"] = guest_config(record.machine)
    for name, value in labels.items():
        if name not in names or name.startswith("gpuhil."):
            result.labels.append(Label(name=name, value=value))
    result.labels.append(Label(name="tag", value=outcome.value))
    _by_machine(result, origin)


def write_result(config: pytest.Config, nodeid: str, outcome: Outcome, message: str,
                 name: str = "") -> None:
    """A finished Allure result of its own for ``nodeid`` (nothing without ``--alluredir``)."""
    results = getattr(config.option, "allure_report_dir", None)
    if not results:
        return
    from allure_commons.logger import AllureFileLogger
    from allure_commons.model2 import Label, Parameter, Status, StatusDetails, TestResult
    from allure_commons.utils import md5, now

    origin = config.stash.get(ORIGIN_KEY, None) or RunOrigin.here()
    mapping = ALLURE[outcome]
    labels = [Label("gpuhil.outcome", outcome.value),
              Label("gpuhil.category", mapping.category.value), Label("tag", outcome.value),
              Label("host_gpu", origin.gpu)]
    params = origin.parameters()
    result = TestResult(uuid=str(uuid.uuid4()), name=name or nodeid.rsplit("::", 1)[-1],
                        fullName=nodeid, start=now(), stop=now(),
                        historyId=md5(nodeid, *(params[k] for k in sorted(params))),
                        parameters=[Parameter(name=k, value=v) for k, v in params.items()],
                        status=getattr(Status, mapping.status.upper()), labels=labels,
                        statusDetails=StatusDetails(message=allure_message(outcome, message)))
    _by_machine(result, origin)
    AllureFileLogger(results, clean=False).report_result(result)
