package sink

import (
	"context"
	"errors"
)

// Placeholders until the NATS and UDP sinks land (next commits).

func openNATS(context.Context, NATSSpec, Options) (Sink, error) {
	return nil, errors.New("can't open a nats sink: not written yet")
}

func openUDP(UDPSpec, Options) (Sink, error) {
	return nil, errors.New("can't open a udp sink: not written yet")
}
