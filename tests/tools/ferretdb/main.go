// Command ferretdb runs FerretDB v1 (SQLite or PostgreSQL backend) on one loopback
// address until SIGINT/SIGTERM: the MongoDB server of the database tests. FerretDB itself
// listens on a free loopback port behind the createIndexes shim (nsshim.go).
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen-addr", "127.0.0.1:27017", "host:port to listen on")
	handler := flag.String("handler", "sqlite", "backend: sqlite or postgresql")
	sqliteURL := flag.String("sqlite-url", "", "file:/existing/dir/ (trailing slash)")
	pgURL := flag.String("postgresql-url", "", "postgres://user@host:port/db")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	backend := inner.Addr().String()
	inner.Close()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: backend},
		Handler:       *handler,
		SQLiteURL:     *sqliteURL,
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go serveShim(ln, backend)
	log.Print("listening: ", ln.Addr(), " (FerretDB at ", f.MongoDBURI(), ")")
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
