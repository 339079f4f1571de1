package main

// FerretDB v1's SQLite handler applies update, delete and findAndModify as "read the
// matching documents, change them in Go, write them back" without a transaction around the
// two steps (FerretDB issue #3040). Two concurrent conditional updates of one document can
// therefore both succeed, which breaks what MongoDB guarantees and what our services rely on:
// a filtered update is a compare-and-set (optimistic concurrency, outbox claims).
//
// The fix lives here, in the local server only: a small proxy in front of FerretDB that
// forwards the MongoDB wire protocol untouched and lets one write command at a time through,
// from request to reply. Reads stay concurrent. On a real MongoDB none of this is needed.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
)

const (
	headerLength = 16
	opMsg        = 2013
	// A message larger than this is not a MongoDB message (the server's limit is 48 MB).
	maxMessageLength = 64 << 20
)

var writeCommands = map[string]bool{
	"insert": true, "update": true, "delete": true,
	"findAndModify": true, "findandmodify": true,
}

// writeLock admits one write command at a time across all connections.
var writeLock sync.Mutex

// serveSerialised accepts clients on ln and relays each to upstream until ctx ends.
func serveSerialised(ctx context.Context, ln net.Listener, upstream string, logger *slog.Logger) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		client, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				logger.Error("accept failed", "error", err)
			}
			return
		}
		go relay(client, upstream, logger)
	}
}

func relay(client net.Conn, upstream string, logger *slog.Logger) {
	defer client.Close()
	server, err := net.Dial("tcp", upstream)
	if err != nil {
		logger.Error("upstream dial failed", "error", err)
		return
	}
	defer server.Close()

	// pendingWrite carries the request id of a write in flight on this connection; the reply
	// side releases the lock when the answer to that id has been passed back.
	pendingWrite := make(chan uint32, 1)
	done := make(chan struct{})
	var once sync.Once
	finish := func() { once.Do(func() { close(done); client.Close(); server.Close() }) }

	go func() { // server -> client
		defer finish()
		for {
			msg, err := readMessage(server)
			if err != nil {
				return
			}
			_, writeErr := client.Write(msg)
			select {
			case id := <-pendingWrite:
				if responseTo(msg) == id {
					writeLock.Unlock()
				} else {
					pendingWrite <- id // not its answer yet
				}
			default:
			}
			if writeErr != nil {
				return
			}
		}
	}()

	defer func() { // a connection that dies holding the lock must give it back
		<-done
		select {
		case <-pendingWrite:
			writeLock.Unlock()
		default:
		}
	}()

	for { // client -> server
		msg, err := readMessage(client)
		if err != nil {
			finish()
			return
		}
		if isWrite(msg) && expectsReply(msg) {
			writeLock.Lock()
			pendingWrite <- requestID(msg)
		}
		if _, err = server.Write(msg); err != nil {
			finish()
			return
		}
	}
}

func readMessage(r io.Reader) ([]byte, error) {
	var header [headerLength]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	length := binary.LittleEndian.Uint32(header[0:4])
	if length < headerLength || length > maxMessageLength {
		return nil, errors.New("malformed message length")
	}
	msg := make([]byte, length)
	copy(msg, header[:])
	if _, err := io.ReadFull(r, msg[headerLength:]); err != nil {
		return nil, err
	}
	return msg, nil
}

func requestID(msg []byte) uint32  { return binary.LittleEndian.Uint32(msg[4:8]) }
func responseTo(msg []byte) uint32 { return binary.LittleEndian.Uint32(msg[8:12]) }
func opCode(msg []byte) uint32     { return binary.LittleEndian.Uint32(msg[12:16]) }

// expectsReply is false for OP_MSG with moreToCome (an unacknowledged write): no answer comes.
func expectsReply(msg []byte) bool {
	if opCode(msg) != opMsg || len(msg) < headerLength+4 {
		return true
	}
	flags := binary.LittleEndian.Uint32(msg[headerLength : headerLength+4])
	return flags&0x2 == 0
}

// isWrite reads the command name: the first key of the OP_MSG body document (section 0).
func isWrite(msg []byte) bool {
	if opCode(msg) != opMsg {
		return false
	}
	// header, flagBits, section kind byte, document length, element type byte
	start := headerLength + 4 + 1 + 4 + 1
	if len(msg) <= start || msg[headerLength+4] != 0 {
		return false
	}
	end := bytes.IndexByte(msg[start:], 0)
	if end < 0 {
		return false
	}
	return writeCommands[string(msg[start:start+end])]
}
