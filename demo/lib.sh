# demo/lib.sh, sourced by the demos.

# serve_console NS SOCKET brings a
# vswitchd's web console, which listens on 127.0.0.1:8470 inside the
# namespace NS, to this host's 127.0.0.1:${WEB_PORT:-8470} (and nowhere
# else) with socat, prints its login URL and sets CONSOLE_PID (end it by PID).
serve_console() {
  local ns=$1 sock=$2 port=${WEB_PORT:-8470}
  command -v socat >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null; }
  socat TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork EXEC:"ip netns exec $ns socat STDIO TCP\:127.0.0.1\:8470" &
  CONSOLE_PID=$!
  echo; echo "== the web console (this URL logs in once, within 5 minutes; $T/vswitchctl --socket $sock console prints another):"
  echo "  $("$T/vswitchctl" --socket "$sock" console | sed "s#127.0.0.1:8470#127.0.0.1:$port#")"
}

# ping_matrix WIDTH NAME... pings every pair at once (two pings each) and
# prints who reaches whom, rows pinging columns, in columns WIDTH wide. The
# caller says where each NAME is: vm_ns NAME (its namespace), vm_ip NAME
# (its address) and vm_label NAME (its heading).
ping_matrix() {
  local w=$1 a b pings=()
  shift
  for a in "$@"; do for b in "$@"; do
    [ "$a" = "$b" ] && continue
    ( ip netns exec "$(vm_ns $a)" ping -c 2 -i 0.2 -W 1 -q "$(vm_ip $b)" >/dev/null 2>&1 && echo ok || echo -- ) > "$T/p-$a-$b" &
    pings+=($!)
  done; done
  wait "${pings[@]}" # not a bare wait: vswitchd runs in the background too
  printf "%-${w}s" ""; for b in "$@"; do printf "%-${w}s" "$(vm_label $b)"; done; echo
  for a in "$@"; do
    printf "%-${w}s" "$(vm_label $a)"
    for b in "$@"; do if [ "$a" = "$b" ]; then printf "%-${w}s" "."; else printf "%-${w}s" "$(cat "$T/p-$a-$b")"; fi; done
    echo
  done
}
