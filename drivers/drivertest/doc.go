// Package drivertest holds small, dependency-free test doubles for jobs drivers: a map-backed
// Pipeline, a Message with exported fields, a thread-safe priority Queue, a map-backed Configurer
// and a Logger. It is an ordinary (non-_test) package so every driver's tests can import it.
//
// The doubles follow the api/v4 jobs contract (github.com/roadrunner-server/api/v4/plugins/v4/jobs)
// and the way the jobs plugin fills the values in: static pipelines carry typed values and a
// `config` sub-map, pipelines created by the Declare RPC carry strings.
package drivertest
