"""The runtime shell: settings, topics, Kafka I/O, the Faust app and its agents. The only place that touches the network and the environment."""
