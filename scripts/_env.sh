# Sourced by scripts/test and scripts/demo: makes .venv with everything the project needs.
# Idempotent and quick when nothing changed (a stamp keyed by pyproject.toml's hash).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

need_java() {
  # The local broker needs Java 17+ and Maven, unless an existing broker is named.
  # 'need_java always': needed even then (the test suite's fault tests run their own broker).
  [[ "${1:-}" != always && -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]] && return 0
  if command -v java >/dev/null && command -v mvn >/dev/null; then return 0; fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "revocast: installing Java 17 and Maven for the local Kafka broker" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
  else
    echo "revocast: the local Kafka broker needs Java 17+ and Maven on PATH" >&2
    [[ "${1:-}" == always ]] || echo "          (or set KAFKA_BOOTSTRAP_SERVERS to an existing broker)" >&2
    exit 1
  fi
}

need_redis() {
  # The request-path benchmark compares against a real per-request Redis lookup.
  command -v redis-server >/dev/null && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "revocast: installing redis-server for the benchmarks" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "revocast: redis-server not found; the benchmark's Redis comparison will say so" >&2
  fi
}

ensure_venv() {
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "revocast: Python 3.11+ is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  local stamp="$VENV/.revocast-installed" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "revocast: installing into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U "pip>=25.1"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[streams,web,metrics,demo]" --group "$ROOT/pyproject.toml:dev"
    echo "$want" > "$stamp"
  fi
}
