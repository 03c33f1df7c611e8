package delta

// The weak hash is a polynomial rolling hash over Z/2^64:
//
//	h(x[0..n)) = Σ T[x[i]] · P^(n-1-i)  (mod 2^64)
//
// where T maps each byte value to a fixed pseudo-random 64-bit value and P
// is a fixed odd constant. Rolling the window one byte costs one multiply
// and two table loads: h' = h·P + T[in] − T[out]·P^n. The weak checksum on
// the wire is the top 32 bits, which a multiply mixes best.

const weakP = 0x9E3779B97F4A7C15 // odd (2^64/φ)

// weakT is T: splitmix64 of the byte value from a fixed seed.
var weakT = func() (t [256]uint64) {
	s := uint64(0x6a09e667f3bcc908)
	for i := range t {
		s += 0x9E3779B97F4A7C15
		z := s
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		t[i] = z ^ (z >> 31)
	}
	return t
}()

// weakP2..weakP8 are powers of P (mod 2^64) for the unrolled sum.
var (
	weakP2 = pow(2)
	weakP3 = pow(3)
	weakP4 = pow(4)
	weakP5 = pow(5)
	weakP6 = pow(6)
	weakP7 = pow(7)
	weakP8 = pow(8)
)

// pow returns P^n mod 2^64.
func pow(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= weakP
	}
	return p
}

// weakSum returns the full 64-bit weak hash of p.
func weakSum(p []byte) uint64 {
	t := &weakT
	p2, p3, p4, p5, p6, p7, p8 := weakP2, weakP3, weakP4, weakP5, weakP6, weakP7, weakP8
	var h uint64
	for len(p) >= 8 {
		q := p[:8:8]
		h = h*p8 +
			t[q[0]]*p7 + t[q[1]]*p6 + t[q[2]]*p5 + t[q[3]]*p4 +
			t[q[4]]*p3 + t[q[5]]*p2 + t[q[6]]*weakP + t[q[7]]
		p = p[8:]
	}
	for _, c := range p {
		h = h*weakP + t[c]
	}
	return h
}

// weakKey is the 32-bit weak checksum carried in signatures.
func weakKey(h uint64) uint32 { return uint32(h >> 32) }

// rollTable returns U with U[c] = T[c]·P^n, used to drop the byte leaving a
// window of n bytes.
func rollTable(n int) *[256]uint64 {
	pn := pow(n)
	var u [256]uint64
	for i := range u {
		u[i] = weakT[i] * pn
	}
	return &u
}
