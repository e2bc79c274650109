/* invoices pay button: Living Invoices' embed widget, for every asset the project accepts.
 * <script src="<public_base_url>/widget.js" data-invoice="<slug or hosted URL>" data-theme="light"></script>
 * or LivingInvoices.createButton({invoice, container, theme, text, onPayment, onStatus}).
 * No dependency, no request to any host but the one this script came from. */
(function () {
  'use strict';
  var self = document.currentScript;
  var BASE = self && self.src ? self.src.replace(/\/widget\.js(\?.*)?$/, '') : '';
  var THEMES = { light: 1, dark: 1, minimal: 1, kaspa: 1 };
  var DONE = { paid: 1, confirmed: 1 };
  var CSS =
    '.li-pay{font:600 15px/1.2 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;border:0;border-radius:10px;' +
    'padding:12px 20px;cursor:pointer;display:inline-flex;flex-direction:column;align-items:center;gap:3px;min-width:200px}' +
    '.li-pay:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}' +
    '.li-pay small{font-weight:400;font-size:12px}' +
    '.li-light{background:linear-gradient(135deg,#15803d,#166534);color:#fff}' +
    '.li-dark{background:linear-gradient(135deg,#1e3a8a,#172554);color:#fff}' +
    '.li-minimal{background:#fff;color:#111827;border:2px solid #4b5563}' +
    '.li-kaspa{background:linear-gradient(135deg,#0f766e,#115e59);color:#fff}' +
    '.li-overlay{position:fixed;inset:0;background:rgba(17,24,39,.6);display:flex;align-items:center;' +
    'justify-content:center;z-index:2147483647}' +
    '.li-dialog{background:#fff;border-radius:12px;width:min(460px,96vw);height:min(760px,94vh);display:flex;' +
    'flex-direction:column;overflow:hidden;box-shadow:0 20px 50px rgba(0,0,0,.35)}' +
    '.li-bar{display:flex;justify-content:flex-end;padding:6px}' +
    '.li-close{font:600 14px system-ui,sans-serif;background:#f3f4f6;color:#111827;border:1px solid #9ca3af;' +
    'border-radius:8px;padding:6px 12px;cursor:pointer}' +
    '.li-close:focus-visible{outline:3px solid #f59e0b}' +
    '.li-frame{flex:1;border:0;width:100%}';

  function style() {
    if (document.getElementById('li-widget-style')) return;
    var s = document.createElement('style');
    s.id = 'li-widget-style';
    s.textContent = CSS;
    document.head.appendChild(s);
  }

  // The slug of a slug or a hosted URL (…/i/<slug>). An invoice number is passed as it is: the
  // server answers 404, since numbers are sequential and never open anything publicly.
  function slugOf(invoice) {
    var s = String(invoice || '').trim();
    var m = s.match(/\/i\/([A-Za-z0-9_-]{1,64})\/?(?:[?#].*)?$/);
    return m ? m[1] : s;
  }

  function left(expires) {
    var ms = Date.parse(expires) - Date.now();
    if (!(ms > 0)) return '';
    var s = Math.floor(ms / 1000), m = Math.floor(s / 60);
    return m + ':' + ('0' + (s % 60)).slice(-2) + ' left';
  }

  function createButton(opts) {
    opts = opts || {};
    style();
    var slug = slugOf(opts.invoice);
    var theme = THEMES[opts.theme] ? opts.theme : 'light';
    var base = opts.base || BASE;
    var url = base + '/i/' + encodeURIComponent(slug);
    var btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'li-pay li-' + theme;
    btn.setAttribute('data-li-theme', theme);
    var main = document.createElement('span');
    var sub = document.createElement('small');
    main.textContent = opts.text || 'Pay';
    btn.appendChild(main);
    btn.appendChild(sub);
    btn.setAttribute('aria-label', (opts.text || 'Pay') + ' invoice');
    var state = { status: null, info: null, paidSent: false, timer: null, tick: null, modal: null, gone: false };

    function render() {
      var i = state.info;
      if (!i) return;
      // an expired quote no longer holds: the amount follows today's median rate (estimate)
      var crypto = i.status === 'expired' && i.estimate ? i.estimate : i.asset_amount;
      var amount = crypto ? (i.status === 'expired' && i.estimate ? '\u2248 ' : '') +
                            crypto.replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '') + ' ' + i.asset
                          : i.total + ' ' + i.currency;
      var label = (opts.text || 'Pay') + ' ' + amount;
      main.textContent = DONE[i.status] ? 'Paid ' + amount : label;
      btn.setAttribute('aria-label', main.textContent);
      sub.textContent = i.status === 'pending' && i.expires_at ? left(i.expires_at)
        : i.status === 'partial' ? 'Send the remaining ' + (i.asset_due ? i.asset_due.replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '') + ' ' + i.asset : i.amount_due + ' ' + i.currency)
        : i.status === 'expired' ? (i.estimate ? 'Expired: at today\u2019s rate' : 'Expired') : i.status === 'cancelled' ? 'Cancelled'
        : i.status === 'paid' ? 'Paid, confirming' : i.status === 'confirmed' ? 'Confirmed' : '';
    }

    function poll() {
      if (state.gone) return;
      var x = new XMLHttpRequest();
      x.open('GET', base + '/rpc/invoice_status?ref=' + encodeURIComponent(slug));
      x.setRequestHeader('Accept', 'application/json');
      x.onload = function () {
        if (x.status === 200) {
          var i;
          try { i = JSON.parse(x.responseText); } catch (e) { return; }
          var changed = i.status !== state.status;
          state.info = i;
          state.status = i.status;
          render();
          if (changed && opts.onStatus) opts.onStatus(i.status, i);
          if (DONE[i.status] && !state.paidSent) {
            state.paidSent = true;
            if (opts.onPayment) opts.onPayment({ tx_id: i.latest_txid || null, status: i.status,
              amount: i.asset_paid, asset: i.asset, invoice: i.invoice_number });
          }
        } else if (x.status === 404) {
          main.textContent = 'Invoice not found';
        }
        if (i && i.status === 'confirmed' || state.status === 'cancelled') return;
        state.timer = setTimeout(poll, opts.pollMs || 2000);
      };
      x.onerror = function () { state.timer = setTimeout(poll, 5000); };
      x.send();
    }

    function close() {
      var m = state.modal;
      if (!m) return;
      state.modal = null;
      document.removeEventListener('keydown', m.keys, true);
      m.overlay.parentNode && m.overlay.parentNode.removeChild(m.overlay);
      btn.focus();
    }

    function open() {
      if (window.innerWidth < 640) {
        window.open(url, '_blank', 'noopener');
        return;
      }
      var overlay = document.createElement('div');
      overlay.className = 'li-overlay';
      var dialog = document.createElement('div');
      dialog.className = 'li-dialog';
      dialog.setAttribute('role', 'dialog');
      dialog.setAttribute('aria-modal', 'true');
      dialog.setAttribute('aria-label', 'Checkout');
      var bar = document.createElement('div');
      bar.className = 'li-bar';
      var x = document.createElement('button');
      x.type = 'button';
      x.className = 'li-close';
      x.textContent = 'Close';
      x.setAttribute('aria-label', 'Close checkout');
      var frame = document.createElement('iframe');
      frame.className = 'li-frame';
      frame.title = 'Checkout';
      frame.src = url;
      bar.appendChild(x);
      dialog.appendChild(bar);
      dialog.appendChild(frame);
      overlay.appendChild(dialog);
      // Escape closes; Tab stays inside the dialog (the close button and the checkout)
      var keys = function (e) {
        if (e.key === 'Escape') { e.preventDefault(); close(); }
        else if (e.key === 'Tab') {
          var a = document.activeElement;
          if (e.shiftKey && a === x) { e.preventDefault(); frame.focus(); }
          else if (!e.shiftKey && a === frame) { e.preventDefault(); x.focus(); }
          else if (a !== x && a !== frame) { e.preventDefault(); x.focus(); }
        }
      };
      x.onclick = close;
      overlay.onclick = function (e) { if (e.target === overlay) close(); };
      document.addEventListener('keydown', keys, true);
      document.body.appendChild(overlay);
      state.modal = { overlay: overlay, keys: keys };
      x.focus();
    }

    btn.onclick = open;
    var c = opts.container;
    if (typeof c === 'string') c = document.querySelector(c);
    if (c) c.appendChild(btn);
    else if (opts.after && opts.after.parentNode) opts.after.parentNode.insertBefore(btn, opts.after.nextSibling);
    state.tick = setInterval(render, 1000);
    poll();
    return {
      element: btn,
      open: open,
      close: close,
      destroy: function () {
        state.gone = true;
        clearTimeout(state.timer);
        clearInterval(state.tick);
        close();
        if (btn.parentNode) btn.parentNode.removeChild(btn);
      }
    };
  }

  window.LivingInvoices = window.LivingInvoices || { createButton: createButton };
  if (self && self.getAttribute('data-invoice')) {
    createButton({ invoice: self.getAttribute('data-invoice'), theme: self.getAttribute('data-theme'),
                   text: self.getAttribute('data-text') || undefined, after: self });
  }
})();
