//go:build !demo

package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// The programs only the tests use: garbage collection and namespace deletion, the scheduler
// (DRA allocation), kubectl, and kubelet's DRA client (kubeletdra.go).
func init() {
	commands["scheduler"] = func() int { return cli.Run(scheduler.NewSchedulerCommand()) }
	commands["kubelet-dra"] = runKubeletDRA
	commands["controller-manager"] = func() int {
		return cli.Run(controllermanager.NewControllerManagerCommand())
	}
	commands["kubectl"] = func() int {
		logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	}
}
