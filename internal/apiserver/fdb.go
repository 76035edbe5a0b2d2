package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
)

// getFDB answers one page of a running switch's MAC table: memory for the
// page, not for the table, however large it is.
func (s *Server) getFDB(w http.ResponseWriter, r *http.Request) {
	sw, ok := s.running(w, r)
	if !ok {
		return
	}
	q, err := parseFDBQuery(r.URL.Query())
	if err != nil {
		s.fail(w, err)
		return
	}
	rows, more, err := sw.MACPage(q.after, q.limit, q.filter)
	if errors.Is(err, l2.ErrNotFound) {
		err = field.New("port", q.filter.Port, "a port of switch "+r.PathValue("name")+" (vswitchctl stats "+r.PathValue("name")+" lists them)")
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	page := api.FDBPage{Entries: make([]api.FDBEntry, len(rows))}
	for i, e := range rows {
		page.Entries[i] = api.FDBEntry{VLAN: uint16(e.VID), MAC: e.MAC.String(), Port: e.PortName, Static: e.Static, AgeSeconds: e.Age.Seconds()}
	}
	if more {
		last := rows[len(rows)-1]
		page.Next = formatCursor(last.VID, last.MAC)
	}
	writeJSON(w, http.StatusOK, page)
}

type fdbQuery struct {
	after  l2.MACCursor
	limit  int
	filter l2.MACFilter
}

// What the FDB parameters allow.
const (
	allowedFDBVLAN   = "0 (the static entries that hold on every VLAN of their port) or a VLAN ID from 1 to 4094"
	allowedFDBMAC    = `a MAC address: "aa:bb:cc:dd:ee:ff", "aa-bb-cc-dd-ee-ff", "aabb.ccdd.eeff" or "aabbccddeeff"`
	allowedFDBCursor = `a page's "next" cursor, VLAN/MAC such as "10/02:00:00:00:00:01"`
)

// parseFDBQuery reads limit, after, vlan, mac and port, reporting every bad
// one at once.
func parseFDBQuery(v url.Values) (fdbQuery, error) {
	q := fdbQuery{limit: api.FDBPageDefault, filter: l2.MACFilter{Port: v.Get("port")}}
	var bad field.List
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > api.FDBPageMax {
			bad.Add("limit", s, fmt.Sprintf("a number of rows from 1 to %d (default %d)", api.FDBPageMax, api.FDBPageDefault))
		}
		q.limit = n
	}
	if s := v.Get("after"); s != "" {
		vid, mac, ok := parseCursor(s)
		if !ok {
			bad.Add("after", s, allowedFDBCursor)
		}
		q.after = l2.CursorAfter(vid, mac)
	}
	if s := v.Get("vlan"); s != "" {
		vid, ok := parseVLAN(s)
		if !ok {
			bad.Add("vlan", s, allowedFDBVLAN)
		}
		q.filter.VLAN, q.filter.ByVLAN = vid, true
	}
	if s := v.Get("mac"); s != "" {
		m, err := frame.ParseMAC(s)
		if err != nil || m.IsZero() {
			bad.Add("mac", s, allowedFDBMAC+", not all zero")
		}
		q.filter.MAC = m
	}
	return q, bad.Err()
}

// parseVLAN reads a VLAN of the MAC table: 0 (AnyVLAN) to 4094.
func parseVLAN(s string) (frame.VID, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < int(l2.AnyVLAN) || n > int(frame.MaxVID) {
		return 0, false
	}
	return frame.VID(n), true
}

// formatCursor writes the cursor past (vid, mac) as "VLAN/MAC".
func formatCursor(vid frame.VID, mac frame.MAC) string { return vid.String() + "/" + mac.String() }

// parseCursor reads formatCursor's output.
func parseCursor(s string) (frame.VID, frame.MAC, bool) {
	vs, ms, ok := strings.Cut(s, "/")
	vid, vok := parseVLAN(vs)
	mac, err := frame.ParseMAC(ms)
	return vid, mac, ok && vok && err == nil
}
