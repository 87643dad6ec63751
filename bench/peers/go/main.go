// The Go peer of the FastCGI benchmark (bench/fastcgi.js): Go's own net/http/fcgi serving
// hello, echo (the body read whole, then sent back) and upload (the body counted) on a unix
// socket. Built at bench time with `go build` into a temp dir; never committed as a binary.
package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: fcgi-peer SOCKET")
	}
	sock := os.Args[1]
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	// nginx's workers run as another user
	if err := os.Chmod(sock, 0o666); err != nil {
		log.Fatal(err)
	}
	hello := []byte("hello world\n")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		switch route {
		case "hello":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", fmt.Sprint(len(hello)))
			_, _ = w.Write(hello)
		case "echo":
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			_, _ = w.Write(body)
		case "upload":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%d\n", n)
		default:
			http.NotFound(w, r)
		}
	})
	log.Fatal(fcgi.Serve(l, handler))
}
