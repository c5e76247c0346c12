package tests

// memoryConfig is the base .rr.yaml of the end-to-end tests: PHP workers over pipes, the memory
// driver, metrics and status on free loopback ports. Tests append to the jobs section with
// fmt-free templates ({{.RPC}} etc. are filled in by helpers.Start).
const memoryConfig = `
version: "3"
rpc:
  listen: tcp://{{.RPC}}
server:
  command: "php {{.PHP}}/worker.php"
  relay: pipes
  env:
    RRJOBS_TEST_DIR: "{{.Dir}}"
logs:
  mode: development
  level: {{.LogLevel}}
  output: ["{{.Dir}}/rr.log"]
  err_output: ["{{.Dir}}/rr.log"]
metrics:
  address: {{.Metrics}}
status:
  address: {{.Status}}
endure:
  grace_period: 10s
`
