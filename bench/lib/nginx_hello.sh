# Sourced by the nginx benchmarks: the one nginx set-up they all measure.
#   write_nginx_hello_conf DIR PORT   writes DIR/nginx.conf: one worker answering
#                                     `return 200 "hello\n"` on 127.0.0.1:PORT, no access log
#   free_port                         prints a free loopback TCP port
#   wait_for_port PORT                waits up to 30 s for PORT to accept
write_nginx_hello_conf() {
  local dir=$1 port=$2
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fcgi;
  uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  server { listen 127.0.0.1:$port; location / { return 200 "hello\n"; } }
}
CONF
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for_port() {
  local port=$1
  for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
