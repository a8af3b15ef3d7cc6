package main

// The test server's one compatibility shim: mongorestore always puts the legacy `ns`
// option into each index of createIndexes (with ignoreUnknownIndexOptions, which MongoDB
// honours and FerretDB v1 does not: "Index option "ns" is unknown", FerretDB#4638). The
// shim sits in front of FerretDB on the public address and removes `ns` from the index
// specifications of createIndexes OP_MSGs; every other byte is passed through as is.

import (
	"encoding/binary"
	"io"
	"log"
	"net"

	"go.mongodb.org/mongo-driver/bson"
)

const opMsg = 2013

// serveShim accepts on ln and forwards each connection to backend.
func serveShim(ln net.Listener, backend string) {
	for {
		client, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer client.Close()
			server, err := net.Dial("tcp", backend)
			if err != nil {
				log.Print("shim: ", err)
				return
			}
			defer server.Close()
			go func() { _, _ = io.Copy(client, server); client.Close() }()
			forward(client, server)
		}()
	}
}

// forward copies messages from client to server, rewriting createIndexes.
func forward(client io.Reader, server io.Writer) {
	for {
		header := make([]byte, 16)
		if _, err := io.ReadFull(client, header); err != nil {
			return
		}
		size := int(binary.LittleEndian.Uint32(header[0:4]))
		if size < 16 || size > 64<<20 {
			return
		}
		body := make([]byte, size-16)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		if binary.LittleEndian.Uint32(header[12:16]) == opMsg {
			body = stripIndexNS(body)
			binary.LittleEndian.PutUint32(header[0:4], uint32(16+len(body)))
		}
		if _, err := server.Write(append(header, body...)); err != nil {
			return
		}
	}
}

// stripIndexNS rewrites an OP_MSG body (flags, kind-0 section first) whose command is
// createIndexes without checksum; anything else comes back unchanged.
func stripIndexNS(body []byte) []byte {
	if len(body) < 9 || binary.LittleEndian.Uint32(body[0:4])&1 != 0 || body[4] != 0 {
		return body
	}
	docLen := int(binary.LittleEndian.Uint32(body[5:9]))
	if docLen < 5 || 5+docLen > len(body) {
		return body
	}
	var cmd bson.D
	if err := bson.Unmarshal(body[5:5+docLen], &cmd); err != nil || len(cmd) == 0 ||
		cmd[0].Key != "createIndexes" {
		return body
	}
	for i, e := range cmd {
		indexes, ok := e.Value.(bson.A)
		if e.Key != "indexes" || !ok {
			continue
		}
		for j, index := range indexes {
			if spec, ok := index.(bson.D); ok {
				kept := bson.D{}
				for _, opt := range spec {
					if opt.Key != "ns" {
						kept = append(kept, opt)
					}
				}
				indexes[j] = kept
			}
		}
		cmd[i].Value = indexes
	}
	doc, err := bson.Marshal(cmd)
	if err != nil {
		return body
	}
	out := append([]byte{}, body[0:5]...)
	out = append(out, doc...)
	return append(out, body[5+docLen:]...)
}
