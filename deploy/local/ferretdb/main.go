// Command ferretdb-lite runs FerretDB v1 (MongoDB wire protocol) on an SQLite
// data directory for the Docker-free local stack (deploy/local/stack.sh).
//
// Why not `go install github.com/FerretDB/FerretDB/cmd/ferretdb`? That binary
// panics at start when built outside FerretDB's own tree (it needs a generated
// build/version/version.txt, FerretDB issue #2982). The embeddable package
// `github.com/FerretDB/FerretDB/ferretdb` has no such requirement, so this
// small wrapper is all we need.
//
// The SQLite backend uses modernc.org/sqlite (pure Go), so the binary builds
// with CGO_ENABLED=0 and needs no C toolchain.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data-dir", "", "directory for the SQLite databases (required)")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()

	if err := run(*listenAddr, *dataDir, *logLevel); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-lite: %s\n", err)
		os.Exit(1)
	}
}

func run(listenAddr, dataDir, logLevel string) error {
	if dataDir == "" {
		return errors.New("-data-dir is required")
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("bad -log-level: %w", err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}

	// The SQLite backend insists on an existing directory and a trailing slash.
	if err = os.MkdirAll(abs, 0o755); err != nil {
		return err
	}

	// Build the URI with net/url so that unusual characters in the path are escaped.
	// synchronous(normal): in WAL mode SQLite then syncs the log at checkpoints rather than
	// at every commit. A commit survives a crash of this process, and only an OS crash or a
	// power cut may lose the last ones: the durability mongod gives a default write (w:1,
	// acknowledged before its journal is flushed, which it does every 100 ms). FerretDB keeps
	// its own defaults for the other pragmas (busy_timeout, journal_mode(wal), auto_vacuum).
	query := url.Values{"_pragma": {"synchronous(normal)"}}
	sqliteURL := (&url.URL{Scheme: "file", Path: abs + "/", RawQuery: query.Encode()}).String()

	// Telemetry: the embeddable package never runs the reporter and marks it
	// disabled and locked itself (ferretdb.New), so nothing leaves the machine.
	// FerretDB itself listens on a private loopback port; clients reach it through the
	// write-serialising proxy on listenAddr (see serialise.go for why).
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	// SIGTERM (stack.sh stop) and SIGINT (Ctrl-C) cancel the context; Run then
	// closes the listener, the open connections and the SQLite databases.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// New has already bound FerretDB's socket; its URI names the port it got.
	upstream, err := url.Parse(f.MongoDBURI())
	if err != nil {
		return err
	}
	public, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return err
	}
	go serveSerialised(ctx, public, upstream.Host, logger)

	logger.Info("ferretdb-lite ready", "listen_addr", listenAddr, "data_dir", abs)

	if err = f.Run(ctx); err != nil {
		return err
	}

	logger.Info("ferretdb-lite stopped")

	return nil
}
