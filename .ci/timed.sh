# Sourced by the .ci scripts that run steps under headings.
#
#   timed NAME COMMAND...   runs COMMAND under the heading "== NAME" and notes its time
#   print_timings           prints every step's time, in order
timings=()
timed() {
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  "$@"
  timings+=("$(printf '%4ds  %s' $((SECONDS - start)) "$name")")
}
print_timings() { printf '%s\n' "${timings[@]}"; }
