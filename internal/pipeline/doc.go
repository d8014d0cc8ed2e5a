// Package pipeline moves datagrams from receivers to sinks: the server's
// workers, their bounded queues of chunks, and the sink writers.
//
// One worker per receiver, on a locked OS thread pinned to the CPU that
// serves its queue, calls Receive, copies the batch into a chunk, hands the
// frames back to the receiver at once, and queues the chunk to every sink.
// One goroutine per worker and sink writes the chunks in order. A chunk
// goes back to its worker's free list when every sink is done with it.
//
// Memory is bounded: each worker owns a fixed set of chunks (QueueBytes per
// sink, counting both the data and the datagram descriptors; a chunk holds
// 64 KiB, any datagram), allocated at start. When a
// sink's queue is full, OnFull says what happens: drop the datagrams for
// that sink and count them (queue_full), or block the worker, so the receive
// ring backs up and the kernel counts the loss (AF_XDP rx_ring_full /
// rx_dropped, socket overflows).
//
// Small batches are coalesced while the writers are behind: after a batch,
// the worker ships its chunk at once only if some writer has nothing queued
// (it would otherwise wait for the next batch); when every writer has work,
// the worker keeps filling the chunk with the next batches. A writer that
// runs dry takes the worker's open chunk and ships it itself, so a datagram
// never waits for more traffic, and a slow sink fills its queue with full
// chunks rather than with hundreds of chunks of a datagram or two.
//
// Dense traffic is coalesced too: a receiver that says when it is about to
// wait in the kernel (datapath.Idler, the AF_XDP socket while it naps)
// lets the worker keep its open chunk across batches for up to four naps
// and ships it before that wait. Each chunk queued to a writer that sleeps
// wakes it, and at millions of packets a second those wakeups, not the
// writers' work, were most of the server's cost.
package pipeline
