# demo/console.sh, sourced by the demos: serve_console NS SOCKET brings a
# vswitchd's web console, which listens on 127.0.0.1:8470 inside the
# namespace NS, to this host's 127.0.0.1:${WEB_PORT:-8470} (and nowhere
# else) with socat, prints its login URL and sets CONSOLE_PID (end it by PID).
serve_console() {
  local ns=$1 sock=$2 port=${WEB_PORT:-8470}
  command -v socat >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null; }
  socat TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork EXEC:"ip netns exec $ns socat STDIO TCP\:127.0.0.1\:8470" &
  CONSOLE_PID=$!
  echo; echo "== the web console (vswitchctl console prints its URL; the token is in it):"
  echo "  $("$T/vswitchctl" --socket "$sock" console | sed "s#127.0.0.1:8470#127.0.0.1:$port#")"
}
