export * from './isolation';
export * from './code-sandbox';
export * from './python-session';
