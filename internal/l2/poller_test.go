package l2

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/port/mem"
)

// polledMem is an in-memory port that a Poller can drive; events, if
// set, records its Close.
type polledMem struct {
	*mem.Port
	fd     int
	events *[]string
}

func (p polledMem) Close() error {
	if p.events != nil {
		*p.events = append(*p.events, fmt.Sprint("close ", p.fd))
	}
	return p.Port.Close()
}

func (p polledMem) PollFD() int { return p.fd }

func (p polledMem) ReadNow(bufs [][]byte, sizes []int, offset int) (int, error) {
	if p.Queued() == 0 {
		return 0, nil
	}
	return p.Read(bufs, sizes, offset) // frames are queued: it does not wait
}

// spinPoller stands in for package poll: threads goroutines call the
// watched ports' ready functions over and over, a watch on one thread only.
type spinPoller struct {
	mu      sync.Mutex
	next    int
	threads []*spinThread
	events  []string // watches stopped, with the ports' closes (under the switch's lock)
}

type spinThread struct {
	mu      sync.Mutex // held while a ready function runs: stop waits on it
	watches map[int]func() bool
}

func newSpinPoller(t *testing.T, threads int) *spinPoller {
	p := &spinPoller{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range threads {
		th := &spinThread{watches: map[int]func() bool{}}
		p.threads = append(p.threads, th)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				th.mu.Lock()
				for fd, ready := range th.watches {
					if !ready() {
						delete(th.watches, fd)
					}
				}
				th.mu.Unlock()
				time.Sleep(10 * time.Microsecond)
			}
		}()
	}
	t.Cleanup(func() { close(done); wg.Wait() })
	return p
}

// barrier returns once every ready function running when it was called
// has returned.
func (p *spinPoller) barrier() {
	for _, th := range p.threads {
		th.mu.Lock()
		th.mu.Unlock()
	}
}

func (p *spinPoller) Watch(fd int, ready func() bool) (func(), error) {
	p.mu.Lock()
	th := p.threads[p.next%len(p.threads)]
	p.next++
	p.mu.Unlock()
	th.mu.Lock()
	th.watches[fd] = ready
	th.mu.Unlock()
	return func() {
		th.mu.Lock()
		delete(th.watches, fd)
		th.mu.Unlock()
		p.events = append(p.events, fmt.Sprint("stop ", fd))
	}, nil
}

// Ports driven by a Poller forward like ports with a goroutine each, and
// the switch keeps one set of frame buffers per thread forwarding at once,
// not one per port: 64 super-frame ports on 2 threads hold 2 MiB, not 64.
func TestPollerDrivenPorts(t *testing.T) {
	const ports, threads = 64, 2
	sp := newSpinPoller(t, threads)
	s, err := New(Options{Name: "polled", Poller: sp})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peers := make([]*mem.Port, ports)
	for i := range ports {
		a, b := mem.NewPair(mem.Config{Offloads: offload.All, QueueLen: 256})
		peers[i] = b
		if err := s.AddPort(fmt.Sprint("p", i), polledMem{a, 100 + i, &sp.events}, PortConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	// Every port sends to the next one, 100 frames each, all at once.
	// The first frame of each is flooded (the destination is not yet
	// learned): send one from every port first so that every address is.
	hdr := make([]byte, offload.VnetHdrLen)
	send := func(i int, id uint32) {
		f := append(append([]byte{}, hdr...), ethFrame(mac(byte((i+1)%ports)), mac(byte(i)), noTag, 0, id)...)
		if n, err := peers[i].Write([][]byte{f}, []int{offload.VnetHdrLen}); n != 1 || err != nil {
			t.Errorf("port %d: write = %d, %v", i, n, err)
		}
	}
	for i := range ports {
		send(i, 0)
	}
	// Every learning frame read, and then every ready function that read
	// one returned (so all its copies are written): only now are the
	// peers' queues drained. Draining on "all learned" alone raced with a
	// flood still being written, whose late copies were then counted with
	// the stream's frames (seen with the race detector on a busy machine).
	waitFor(t, "every learning frame read", func() bool {
		rx := uint64(0)
		for i := range ports {
			c, _ := s.Counters(fmt.Sprint("p", i))
			rx += c.RxPackets
		}
		return s.fdb.Learned() == ports && rx == ports
	})
	sp.barrier()
	bufs, sizes := makeBufs(256, 200), make([]int, 256)
	for i := range ports {
		for peers[i].Queued() > 0 {
			peers[i].Read(bufs, sizes, offload.VnetHdrLen)
		}
	}
	var wg sync.WaitGroup
	for i := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := uint32(1); id <= 100; id++ {
				send(i, id)
			}
		}()
	}
	wg.Wait()
	// Not a speed test: with the race detector on a machine busy with
	// other packages' tests, 6,400 frames on two spin threads can take
	// more than waitFor's 5 s. What must hold is that all arrive, once.
	total := 0
	for deadline := time.Now().Add(60 * time.Second); total != ports*100; time.Sleep(time.Millisecond) {
		total = 0
		for i := range ports {
			total += peers[i].Queued()
		}
		if time.Now().After(deadline) || total > ports*100 {
			t.Fatalf("%d of %d frames delivered after 60 s", total, ports*100)
		}
	}
	for i := range ports {
		c, _ := s.Counters(fmt.Sprint("p", i))
		if c.TxPackets < 100 || c.Dropped() != 0 {
			t.Errorf("port p%d counters %+v", i, c)
		}
	}
	for key, p := range s.pools {
		if n := len(*p.sets.Load()); n > threads {
			t.Errorf("buffer pool %v holds %d sets for %d threads", key, n, threads)
		}
	}
	if len(s.pools) == 0 {
		t.Fatal("no buffer pool: the ports were not driven by the poller")
	}
	// Removing a port stops its watch before closing it: a descriptor
	// closed while watched could be reused by another port.
	if err := s.RemovePort("p0"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"stop 100", "close 100"}; !slices.Equal(sp.events, want) {
		t.Fatalf("removing a port: %q, want %q", sp.events, want)
	}
}

// capturePoller keeps the ready functions for the test to call.
type capturePoller struct{ ready map[int]func() bool }

func (p *capturePoller) Watch(fd int, ready func() bool) (func(), error) {
	p.ready[fd] = ready
	return func() { delete(p.ready, fd) }, nil
}

// A Poller-driven batch allocates nothing either, buffers borrowed and
// returned included.
func TestPollerDrivenBatchAllocatesNothing(t *testing.T) {
	cp := &capturePoller{ready: map[int]func() bool{}}
	s, err := New(Options{Name: "allocs", Poller: cp})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, pa := mem.NewPair(mem.Config{})
	b, pb := mem.NewPair(mem.Config{})
	for i, p := range []*mem.Port{a, b} {
		if err := s.AddPort(fmt.Sprint("p", i), polledMem{p, i + 1, nil}, PortConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	f := [][]byte{ethFrame(mac(2), mac(1), noTag, 0, 1)}
	back := [][]byte{ethFrame(mac(1), mac(2), noTag, 0, 1)}
	offs := []int{0}
	bufs, sizes := makeBufs(4, 200), make([]int, 4)
	step := func() {
		pa.Write(f, offs)
		cp.ready[1]()
		pb.Read(bufs, sizes, 0)
		pb.Write(back, offs)
		cp.ready[2]()
		pa.Read(bufs, sizes, 0)
	}
	step() // learn both stations
	if n := testing.AllocsPerRun(500, step); n != 0 {
		t.Fatalf("a Poller-driven batch allocated %v times", n)
	}
	if c, _ := s.Counters("p1"); c.TxPackets < 500 {
		t.Fatalf("frames did not pass: %+v", c)
	}
}
