"""scripts/_env.sh as scripts/test uses it, on a machine without Java or Maven."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_without_java(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/<script>`` with a broker named, on a PATH holding only the few tools the
    scripts need before Java (no java, mvn, apt) and a missing Python, which stops the script
    before any install."""
    bash = shutil.which("bash")
    assert bash is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("id", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": "broker1:9092",
        "PYTHON": str(tmp_path / "no-python"),
    }
    return subprocess.run(
        [bash, str(REPO_ROOT / "scripts" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_test_script_requires_java_even_when_a_broker_is_named(tmp_path: Path) -> None:
    # The fault tests run a private broker of their own (a shared one cannot be killed),
    # so KAFKA_BOOTSTRAP_SERVERS does not make Java and Maven optional for the suite.
    result = _run_without_java("test", tmp_path)

    assert result.returncode == 1
    assert "needs Java 17+ and Maven" in result.stderr
    assert "set KAFKA_BOOTSTRAP_SERVERS" not in result.stderr


def test_demo_needs_no_java_when_a_broker_is_named(tmp_path: Path) -> None:
    result = _run_without_java("demo", tmp_path)

    # Past need_java, stopped by the missing Python.
    assert result.returncode == 1
    assert "Python 3.11+ is required" in result.stderr
    assert "Java" not in result.stderr
