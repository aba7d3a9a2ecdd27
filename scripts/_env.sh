# Sourced by scripts/test and scripts/demo: makes .venv with everything the project needs.
# Idempotent and quick when nothing changed (a stamp keyed by pyproject.toml's hash); a venv
# whose interpreter no longer runs (Python upgraded or removed) is rebuilt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

die() {
  local line
  for line in "$@"; do echo "revocast: $line" >&2; done
  exit 1
}

apt_install() {
  # Only as root with apt-get; returns 1 (the caller says what is missing) when that is not
  # possible or apt-get fails (no network, no apt source).
  local why="$1"; shift
  [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || return 1
  echo "revocast: installing $* ($why)" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }; then
    echo "revocast: apt-get could not install $* (no network, or no apt source?)" >&2
    return 1
  fi
}

java_major() {
  # "17.0.15" -> 17, "21" -> 21, "1.8.0_292" -> 1 (Java 8): the first number of the version.
  "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1
}

need_java() {
  # The local broker needs Java 17+ and Maven, unless an existing broker is named.
  # 'need_java always': needed even then (the test suite's fault tests run their own broker).
  [[ "${1:-}" != always && -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]] && return 0
  local hint=()
  [[ "${1:-}" == always ]] || hint=("(or set KAFKA_BOOTSTRAP_SERVERS to an existing broker)")
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    apt_install "for the local Kafka broker" openjdk-17-jre-headless maven \
      || die "the local Kafka broker needs Java 17+ and Maven on PATH" ${hint[@]+"${hint[@]}"}
  fi
  # The broker runs $JAVA_HOME/bin/java when it exists, else the java on PATH.
  local java major
  java="$(command -v java)"
  [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] && java="$JAVA_HOME/bin/java"
  major="$(java_major "$java")"
  [[ "${major:-0}" -ge 17 ]] || die \
    "the local Kafka broker needs Java 17+; $java is $("$java" -version 2>&1 | head -n 1)" \
    "(put a Java 17+ first on PATH or point JAVA_HOME at it)" ${hint[@]+"${hint[@]}"}
}

need_redis() {
  # The request-path benchmark compares against a real per-request Redis lookup.
  command -v redis-server >/dev/null && return 0
  apt_install "for the benchmarks" redis-server \
    || echo "revocast: redis-server not found; the benchmark's Redis comparison will say so" >&2
}

need_postgres() {
  # The request-path benchmark compares against a real per-request PostgreSQL lookup. Debian
  # puts initdb and postgres under /usr/lib/postgresql/<version>/bin, off PATH.
  command -v initdb >/dev/null && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
  apt_install "for the benchmarks" postgresql \
    || echo "revocast: PostgreSQL not found; the benchmark's PostgreSQL comparison will say so" >&2
}

file_hash() {
  if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

venv_python_ok() {
  [[ -x "$VENV/bin/python" ]] \
    && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

ensure_venv() {
  command -v "$PY" >/dev/null \
    || die "'$PY' not found: Python 3.11+ is required (set PYTHON=/path/to/python3.11)"
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11+ is required; $PY is $("$PY" -V 2>&1) (set PYTHON=/path/to/python3.11)"
  # scripts/demo and scripts/test started together on a fresh clone must not build or pip
  # install into one venv at once: the second waits, then finds the stamp. The lock is on
  # pyproject.toml itself (no lock file to leave behind) and released before the job runs.
  if command -v flock >/dev/null; then
    exec 9<"$ROOT/pyproject.toml"
    flock 9
  fi
  if ! venv_python_ok; then
    if [[ -e "$VENV" ]]; then
      echo "revocast: $VENV does not run (its Python moved or is older than 3.11): rebuilding it" >&2
    fi
    "$PY" -m venv --clear "$VENV" \
      || die "could not create $VENV (Debian/Ubuntu: apt-get install python3-venv)"
  fi
  local stamp="$VENV/.revocast-installed" want
  want="$(file_hash "$ROOT/pyproject.toml")"
  # The entry points too: a stamp outliving an interrupted or uninstalled package says nothing.
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" \
        || ! -x "$VENV/bin/revocast" || ! -x "$VENV/bin/pytest" ]]; then
    echo "revocast: installing into $VENV" >&2
    rm -f "$stamp"
    { "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U "pip>=25.1" \
      && "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -e "$ROOT[streams,web,metrics,demo]" --group "$ROOT/pyproject.toml:dev"; } \
      || die "installing into $VENV failed (pip's message is above: no network? behind a" \
        "proxy, set HTTPS_PROXY); the next run retries"
    echo "$want" > "$stamp"
  fi
  exec 9<&-
}
