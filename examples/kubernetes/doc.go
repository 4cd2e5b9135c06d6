// Package kubernetes holds no code. It is the Kubernetes example: the app
// with streamgate as a sidecar (deployment.yaml, configmap.yaml,
// service.yaml, ingress.yaml; see README.md). Its test parses the
// manifests and checks that they agree with the streamgate config they
// carry, without a cluster.
package kubernetes
