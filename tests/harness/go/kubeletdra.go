//go:build !demo

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	draplugin "k8s.io/kubernetes/pkg/kubelet/cm/dra/plugin"
)

// runKubeletDRA plays kubelet's part towards a DRA driver's kubelet plugin, through kubelet's
// own client code (pkg/kubelet/cm/dra/plugin: service negotiation, gRPC connection, call
// timeout), and prints the plugin's JSON answer on stdout.
//
//	harness kubelet-dra prepare|unprepare --driver NAME --namespace NS --name CLAIM --uid UID
//	    (--socket PATH | --registration PATH) [--node NODE] [--timeout DURATION]
//
// --socket is the plugin's DRA service socket, taken to serve v1.DRAPlugin. --registration is
// the plugin's registration socket (the one in /var/lib/kubelet/plugins_registry): the command
// then does what kubelet's plugin watcher does first, GetInfo (type DRAPlugin, name = --driver,
// endpoint, supported versions) and NotifyRegistrationStatus, and calls the endpoint it named.
// Exit 0 with the response, 1 with a one-line error on stderr (a gRPC error or a claim's error).
func runKubeletDRA() int {
	if len(os.Args) < 2 || (os.Args[1] != "prepare" && os.Args[1] != "unprepare") {
		fmt.Fprintln(os.Stderr, "usage: harness kubelet-dra prepare|unprepare --driver NAME --namespace NS "+
			"--name CLAIM --uid UID (--socket PATH | --registration PATH) [--node NODE] [--timeout 30s]")
		return 2
	}
	verb := os.Args[1]
	fs := flag.NewFlagSet("kubelet-dra "+verb, flag.ExitOnError)
	socket := fs.String("socket", "", "the plugin's DRA gRPC socket (serves v1.DRAPlugin)")
	registration := fs.String("registration", "", "the plugin's registration socket; discovers the DRA socket")
	driver := fs.String("driver", "", "DRA driver name")
	namespace := fs.String("namespace", "", "the ResourceClaim's namespace")
	name := fs.String("name", "", "the ResourceClaim's name")
	uid := fs.String("uid", "", "the ResourceClaim's UID")
	node := fs.String("node", "harness-node", "the node kubelet would run on")
	timeout := fs.Duration("timeout", 30*time.Second, "per-call timeout")
	_ = fs.Parse(os.Args[2:])
	if *driver == "" || *namespace == "" || *name == "" || *uid == "" || (*socket == "") == (*registration == "") {
		fmt.Fprintln(os.Stderr, "harness kubelet-dra: needs --driver, --namespace, --name, --uid and exactly one of --socket or --registration")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2**timeout)
	defer cancel()

	endpoint, services := *socket, []string{drapb.DRAPluginService}
	if *registration != "" {
		var err error
		endpoint, services, err = register(ctx, *registration, *driver)
		if err != nil {
			fmt.Fprintf(os.Stderr, "harness kubelet-dra: %v\n", err)
			return 1
		}
	}

	// No API client: the manager then skips wiping the node's ResourceSlices.
	getNode := func(context.Context) (*v1.Node, error) {
		return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: *node}}, nil
	}
	manager := draplugin.NewDRAPluginManager(ctx, nil, getNode, nil, 0)
	defer manager.Stop()
	if err := manager.RegisterPlugin(ctx, *driver, endpoint, services, timeout); err != nil {
		fmt.Fprintf(os.Stderr, "harness kubelet-dra: %v\n", err)
		return 1
	}
	plugin, err := manager.GetPlugin(*driver)
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness kubelet-dra: %v\n", err)
		return 1
	}
	claims := []*drapb.Claim{{Namespace: *namespace, Name: *name, Uid: *uid}}
	var response proto.Message
	var claimError string
	if verb == "prepare" {
		r, err := plugin.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: claims})
		if err != nil {
			fmt.Fprintf(os.Stderr, "harness kubelet-dra: NodePrepareResources: %v\n", err)
			return 1
		}
		response = r
		if c, ok := r.GetClaims()[*uid]; ok {
			claimError = c.GetError()
		} else {
			claimError = "the response holds no entry for claim UID " + *uid
		}
	} else {
		r, err := plugin.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: claims})
		if err != nil {
			fmt.Fprintf(os.Stderr, "harness kubelet-dra: NodeUnprepareResources: %v\n", err)
			return 1
		}
		response = r
		if c, ok := r.GetClaims()[*uid]; ok {
			claimError = c.GetError()
		} else {
			claimError = "the response holds no entry for claim UID " + *uid
		}
	}
	out, err := protojson.Marshal(response)
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness kubelet-dra: %v\n", err)
		return 1
	}
	fmt.Println(string(out))
	if claimError != "" {
		fmt.Fprintf(os.Stderr, "harness kubelet-dra: claim %s/%s: %s\n", *namespace, *name, claimError)
		return 1
	}
	return 0
}

// register does kubelet's plugin-watcher handshake on a registration socket and returns the DRA
// endpoint and the gRPC services the plugin says it serves.
func register(ctx context.Context, path, driver string) (string, []string, error) {
	conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", nil, fmt.Errorf("registration socket %s: %w", path, err)
	}
	defer conn.Close()
	client := registerapi.NewRegistrationClient(conn)
	info, err := client.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		return "", nil, fmt.Errorf("GetInfo on %s: %w", path, err)
	}
	problem := ""
	switch {
	case info.GetType() != registerapi.DRAPlugin:
		problem = fmt.Sprintf("plugin type is %q, want %q", info.GetType(), registerapi.DRAPlugin)
	case info.GetName() != driver:
		problem = fmt.Sprintf("plugin name is %q, want the driver name %q", info.GetName(), driver)
	case info.GetEndpoint() == "":
		problem = "plugin names no endpoint"
	case !slices.Contains(info.GetSupportedVersions(), drapb.DRAPluginService):
		problem = fmt.Sprintf("plugin serves %v, want %q among them", info.GetSupportedVersions(), drapb.DRAPluginService)
	}
	status := &registerapi.RegistrationStatus{PluginRegistered: problem == "", Error: problem}
	if _, err := client.NotifyRegistrationStatus(ctx, status); err != nil {
		return "", nil, fmt.Errorf("NotifyRegistrationStatus on %s: %w", path, err)
	}
	if problem != "" {
		return "", nil, fmt.Errorf("registration socket %s: %s", path, problem)
	}
	return info.GetEndpoint(), info.GetSupportedVersions(), nil
}
