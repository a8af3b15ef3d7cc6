// Command dirplugin is a CSI driver for the tests: it keeps each volume as a directory
// under --statedir (volumes/<volume-id>/) and each snapshot as a copy of one
// (snapshots/<snapshot-id>/). It serves the CSI Identity and Controller services on one
// unix socket, so the real csi-provisioner and csi-snapshotter sidecars drive it:
// CreateVolume (empty, or from a snapshot: the copy copied back), DeleteVolume,
// CreateSnapshot, DeleteSnapshot. It has no Node service: nothing is ever mounted (the
// test control plane runs no kubelet), so tests read and write the volume directories.
//
// It exists because csi-driver-host-path, the upstream driver the tests were meant to
// run, cannot be fetched through the Go module proxy (403 for every version).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// safeID is what a volume or snapshot id may be: it becomes a directory name.
var safeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

type driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	name  string
	state string
	mu    sync.Mutex
}

func (d *driver) volumeDir(id string) string   { return filepath.Join(d.state, "volumes", id) }
func (d *driver) snapshotDir(id string) string { return filepath.Join(d.state, "snapshots", id) }

func (d *driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: "0.1.0"}, nil
}

func (d *driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	controller := &csi.PluginCapability{Type: &csi.PluginCapability_Service_{
		Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE},
	}}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{controller}}, nil
}

func (d *driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: c},
		}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func checkID(what, id string) error {
	if !safeID.MatchString(id) {
		return status.Errorf(codes.InvalidArgument, "%s %q is not a valid id", what, id)
	}
	return nil
}

func (d *driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if err := checkID("volume name", req.GetName()); err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	for _, c := range req.GetVolumeCapabilities() {
		if c.GetBlock() != nil {
			return nil, status.Error(codes.InvalidArgument, "block volumes are not supported")
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dir := d.volumeDir(req.GetName())
	vol := &csi.Volume{VolumeId: req.GetName(), CapacityBytes: req.GetCapacityRange().GetRequiredBytes()}
	if _, err := os.Stat(dir); err == nil {
		vol.ContentSource = req.GetVolumeContentSource()
		return &csi.CreateVolumeResponse{Volume: vol}, nil // idempotent retry
	}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if src := req.GetVolumeContentSource(); src != nil {
		snap := src.GetSnapshot()
		if snap == nil {
			return nil, status.Error(codes.InvalidArgument, "only snapshots are supported as a volume's content source")
		}
		if err := checkID("snapshot id", snap.GetSnapshotId()); err != nil {
			return nil, err
		}
		from := d.snapshotDir(snap.GetSnapshotId())
		if _, err := os.Stat(from); err != nil {
			return nil, status.Errorf(codes.NotFound, "snapshot %s not found", snap.GetSnapshotId())
		}
		if err := os.CopyFS(tmp, os.DirFS(from)); err != nil {
			return nil, status.Errorf(codes.Internal, "restoring snapshot %s: %v", snap.GetSnapshotId(), err)
		}
		vol.ContentSource = src
	} else if err := os.MkdirAll(tmp, 0o777); err != nil {
		return nil, status.Errorf(codes.Internal, "creating volume: %v", err)
	}
	if err := os.Chmod(tmp, 0o777); err != nil {
		return nil, status.Errorf(codes.Internal, "creating volume: %v", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, status.Errorf(codes.Internal, "creating volume: %v", err)
	}
	return &csi.CreateVolumeResponse{Volume: vol}, nil
}

func (d *driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if err := checkID("volume id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.RemoveAll(d.volumeDir(req.GetVolumeId())); err != nil {
		return nil, status.Errorf(codes.Internal, "deleting volume: %v", err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func dirSize(dir string) int64 {
	var size int64
	_ = filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if info, ierr := e.Info(); ierr == nil {
				size += info.Size()
			}
		}
		return nil
	})
	return size
}

func (d *driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if err := checkID("snapshot name", req.GetName()); err != nil {
		return nil, err
	}
	if err := checkID("source volume id", req.GetSourceVolumeId()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dir := d.snapshotDir(req.GetName())
	info, err := os.Stat(dir)
	if err != nil {
		from := d.volumeDir(req.GetSourceVolumeId())
		if _, serr := os.Stat(from); serr != nil {
			return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetSourceVolumeId())
		}
		tmp := dir + ".tmp"
		_ = os.RemoveAll(tmp)
		if cerr := os.CopyFS(tmp, os.DirFS(from)); cerr != nil {
			return nil, status.Errorf(codes.Internal, "copying volume %s: %v", req.GetSourceVolumeId(), cerr)
		}
		if rerr := os.Rename(tmp, dir); rerr != nil {
			return nil, status.Errorf(codes.Internal, "creating snapshot: %v", rerr)
		}
		if info, err = os.Stat(dir); err != nil {
			return nil, status.Errorf(codes.Internal, "creating snapshot: %v", err)
		}
	}
	return &csi.CreateSnapshotResponse{Snapshot: &csi.Snapshot{
		SnapshotId:     req.GetName(),
		SourceVolumeId: req.GetSourceVolumeId(),
		CreationTime:   timestamppb.New(info.ModTime()),
		SizeBytes:      dirSize(dir),
		ReadyToUse:     true,
	}}, nil
}

func (d *driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if err := checkID("snapshot id", req.GetSnapshotId()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.RemoveAll(d.snapshotDir(req.GetSnapshotId())); err != nil {
		return nil, status.Errorf(codes.Internal, "deleting snapshot: %v", err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func main() {
	endpoint := flag.String("endpoint", "", "unix://<path> of the socket to serve CSI on")
	name := flag.String("drivername", "dir.csi.stash.test", "the CSI driver's name")
	state := flag.String("statedir", "", "where volumes/ and snapshots/ are kept")
	flag.Parse()
	path, ok := strings.CutPrefix(*endpoint, "unix://")
	if !ok || *state == "" {
		fmt.Fprintln(os.Stderr, "dirplugin: --endpoint unix://<path> and --statedir are required")
		os.Exit(2)
	}
	for _, sub := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(*state, sub), 0o755); err != nil {
			log.Fatal(err)
		}
	}
	_ = os.Remove(path)
	listener, err := net.Listen("unix", path)
	if err != nil {
		log.Fatal(err)
	}
	d := &driver{name: *name, state: *state}
	server := grpc.NewServer(grpc.ConnectionTimeout(10 * time.Second))
	csi.RegisterIdentityServer(server, d)
	csi.RegisterControllerServer(server, d)
	log.Printf("dirplugin %s serving on %s, state in %s", *name, path, *state)
	if err := server.Serve(listener); err != nil {
		log.Fatal(err)
	}
}
