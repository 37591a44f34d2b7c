# Shared helpers of the Kubernetes test scripts (sourced, not run): numbered checks that count
# passes and failures, so each script can end with the `N passed, M failed` line CI reads.

PASSED=0
FAILED=0

pass() {
  PASSED=$((PASSED + 1))
  echo "ok   $((PASSED + FAILED)) - $1"
}
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL $((PASSED + FAILED)) - $1" >&2
}

# check NAME CMD...: runs CMD; passes iff it exits 0. Its output is shown only on failure.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else
    fail "$name"
    printf '%s\n' "$out" | tail -n 20 | sed 's/^/       /' >&2
  fi
}

# contains NAME NEEDLE CMD...: runs CMD; passes iff it exits 0 and its output contains NEEDLE.
contains() {
  local name=$1 needle=$2 out
  shift 2
  if out=$("$@" 2>&1) && [[ "$out" == *"$needle"* ]]; then pass "$name"; else
    fail "$name (wanted \"$needle\")"
    printf '%s\n' "$out" | tail -n 20 | sed 's/^/       /' >&2
  fi
}

# rejects NAME NEEDLE CMD...: passes iff CMD fails and its output contains NEEDLE.
rejects() {
  local name=$1 needle=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    fail "$name (accepted)"
  elif [[ "$out" == *"$needle"* ]]; then pass "$name"; else
    fail "$name (wanted \"$needle\")"
    printf '%s\n' "$out" | tail -n 20 | sed 's/^/       /' >&2
  fi
}

# eventually SECONDS CMD...: retries CMD every 0.5 s until it succeeds or SECONDS pass.
eventually() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# summary: prints the closing `N passed, M failed` line; fails when anything failed.
summary() {
  echo "$PASSED passed, $FAILED failed"
  ((FAILED == 0))
}
