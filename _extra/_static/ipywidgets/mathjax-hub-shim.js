/* MathJax 2's `MathJax.Hub.Queue`, for the widget bundle, on the book's MathJax 3 pages.
 *
 * embed-amd.js (@jupyter-widgets/html-manager 1.0.x) typesets widget labels with MathJax 2's API:
 *     if (window.MathJax !== undefined) MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]);
 * MathJax 3 has no `Hub`, so every widget page threw "Cannot read properties of undefined (reading
 * 'Queue')". This file, loaded before the bundle (it is the first entry of `nb_ipywidgets_js` in
 * _config.yml), gives whatever object `window.MathJax` holds a hidden `Hub` whose `Queue` typesets the
 * element with MathJax 3 (`typesetPromise`, after MathJax's startup). `window.MathJax` is first the
 * settings object Sphinx writes and is then replaced by MathJax 3 itself at startup, so the `Hub` is
 * attached when the property is read; it is not enumerable, so MathJax never sees it among its
 * settings. Nothing changes for MathJax 3's own typesetting.
 */
(function () {
  "use strict";
  var pending = [];

  function typeset(element) {
    var mj = window.MathJax;
    if (!mj || !mj.startup || !mj.startup.promise || !mj.typesetPromise) return false;
    mj.startup.promise
      .then(function () { return mj.typesetPromise(element ? [element] : undefined); })
      .catch(function (err) { console.warn("MathJax could not typeset a widget label:", err); });
    return true;
  }

  var hub = {
    Queue: function () {
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];  // the bundle queues ["Typeset", MathJax.Hub, element]
        if (!Array.isArray(job) || job[0] !== "Typeset") continue;
        if (!typeset(job[2])) pending.push(job[2]);  // MathJax 3 not started yet: after the load
      }
    },
    Typeset: function (element) { hub.Queue(["Typeset", hub, element]); },
    Config: function () {},
    Register: { StartupHook: function () {}, MessageHook: function () {} }
  };

  function withHub(value) {
    if (value && typeof value === "object" && !Object.prototype.hasOwnProperty.call(value, "Hub")) {
      Object.defineProperty(value, "Hub", { value: hub, enumerable: false, configurable: true });
    }
    return value;
  }

  var current = window.MathJax;
  try {
    Object.defineProperty(window, "MathJax", {
      configurable: true,
      enumerable: true,
      get: function () { return withHub(current); },
      set: function (value) { current = value; }
    });
  } catch (err) {  // a page that fixed window.MathJax already: attach to what is there
    withHub(current);
    return;
  }

  window.addEventListener("load", function () {
    var waiting = pending;
    pending = [];
    waiting.forEach(function (element) { typeset(element); });
  });
})();
