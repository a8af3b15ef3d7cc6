//go:build tools

// Package tools pins mongodump and mongorestore as build dependencies of this module.
package tools

import (
	_ "github.com/mongodb/mongo-tools/mongodump/main"
	_ "github.com/mongodb/mongo-tools/mongorestore/main"
)
