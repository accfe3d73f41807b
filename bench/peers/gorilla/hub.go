// Broadcast peer for the ringcast benchmark: gorilla/websocket with the
// chat-example hub design (hub goroutine with register/unregister/broadcast
// channels, one buffered send channel of 256 per client, readPump/writePump),
// one hub per channel, broadcasting websocket.PreparedMessage so each frame is
// encoded once per message rather than once per subscriber.

package main

import (
	"sync"

	"github.com/gorilla/websocket"
)

// Hub maintains the set of active clients of one channel and broadcasts
// messages to them.
type Hub struct {
	clients    map[*Client]bool
	broadcast  chan *websocket.PreparedMessage
	register   chan *Client
	unregister chan *Client
}

func newHub() *Hub {
	return &Hub{
		clients:    make(map[*Client]bool),
		broadcast:  make(chan *websocket.PreparedMessage),
		register:   make(chan *Client),
		unregister: make(chan *Client),
	}
}

func (h *Hub) run() {
	for {
		select {
		case client := <-h.register:
			h.clients[client] = true
		case client := <-h.unregister:
			if _, ok := h.clients[client]; ok {
				delete(h.clients, client)
				close(client.send)
			}
		case message := <-h.broadcast:
			for client := range h.clients {
				select {
				case client.send <- message:
				default:
					// Client's 256-message buffer is full: drop it (chat example).
					close(client.send)
					delete(h.clients, client)
				}
			}
		}
	}
}

// hubs maps channel name -> its hub. A hub lives for the whole process.
var (
	hubsMu sync.Mutex
	hubs   = make(map[string]*Hub)
)

func getHub(channel string, create bool) *Hub {
	hubsMu.Lock()
	defer hubsMu.Unlock()
	h := hubs[channel]
	if h == nil && create {
		h = newHub()
		hubs[channel] = h
		go h.run()
	}
	return h
}
