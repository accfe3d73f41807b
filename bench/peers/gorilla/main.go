package main

import (
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gorilla/websocket"
)

func channelOf(path, prefix string) string {
	if !strings.HasPrefix(path, prefix) {
		return ""
	}
	ch := path[len(prefix):]
	if strings.Contains(ch, "/") {
		return ""
	}
	return ch
}

func handle(w http.ResponseWriter, r *http.Request) {
	if ch := channelOf(r.URL.Path, "/ws/"); ch != "" && r.Method == http.MethodGet {
		serveWs(getHub(ch, true), w, r)
		return
	}
	if ch := channelOf(r.URL.Path, "/publish/"); ch != "" && r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		hub := getHub(ch, false)
		if hub == nil {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "no subscribers\n")
			return
		}
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		hub.broadcast <- pm
		// 202: the hub goroutine has the message; it is not yet in any socket.
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "queued to hub\n")
		return
	}
	http.NotFound(w, r)
}

func main() {
	addr := "127.0.0.1:" + os.Getenv("PORT")
	if os.Getenv("PORT") == "" {
		addr = "127.0.0.1:18104"
	}
	// Go's net package sets TCP_NODELAY on every TCP connection by default.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:  http.HandlerFunc(handle),
		ErrorLog: log.New(io.Discard, "", 0), // logging off
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Close()
		os.Exit(0)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
